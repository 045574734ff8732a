"""Publishing is a non-event: ``python -m build`` makes a source distribution and a wheel that
pass ``twine check`` and hold every file of the package; the wheel installed into a fresh
virtualenv (its dependencies from PyPI, no TensorFlow) scores reviews with the client; and the
wheel's own files (presets, templates), run with the train extra's packages of this virtualenv,
train and export the demo, whose summary names commands that work for that install.

The sources are copied out of the checkout first, so the build writes nothing into it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIST_FILES = ("setup.cfg", "pyproject.toml", "README.md")
REVIEWS = ["a wonderful, moving film", "dull and far too long"]
# Run as the Quickstart's [train] install would be: without the serve extra's web server.
# (A None in sys.modules makes importlib.util.find_spec say "not installed", and import fail.)
WITHOUT_SERVE = (
    "import runpy, sys\n"
    "sys.modules.update(fastapi=None, uvicorn=None)\n"
    "import tfsent\n"
    "print('tfsent from', tfsent.__file__, flush=True)\n"
    "sys.argv = ['python -m tfsent.fit', *sys.argv[1:]]\n"
    "runpy.run_module('tfsent.fit', run_name='__main__')\n"
)

pytestmark = pytest.mark.slow  # a build, a virtualenv from PyPI and a training: minutes


def package_files() -> list[str]:
    """The package's files in the checkout (tracked, or new and not ignored), as the wheel
    names them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "tfsent"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(name for name in listed.splitlines() if (REPO / name).is_file()
                  and "__pycache__" not in name and not name.endswith(".pyc"))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "TF_CPP_MIN_LOG_LEVEL")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in DIST_FILES:
        shutil.copy(REPO / name, source / name)
    for name in package_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(root / "dist"),
                           str(source)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    built = sorted(path.name for path in (root / "dist").iterdir())
    assert built == ["tfsent-0.1.0-py3-none-any.whl", "tfsent-0.1.0.tar.gz"], built
    return {"sdist": root / "dist" / built[1], "wheel": root / "dist" / built[0], "root": root}


def test_sdist_and_wheel_pass_twine_check_and_hold_every_package_file(dist):
    done = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                           str(dist["sdist"]), str(dist["wheel"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout

    files = package_files()
    assert "tfsent/presets/demo.yaml" in files and "tfsent/app/templates/index.html" in files
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        in_wheel = set(wheel.namelist())
        metadata = wheel.read("tfsent-0.1.0.dist-info/METADATA").decode()
    assert [name for name in files if name not in in_wheel] == []
    assert "Requires-Dist: tensorflow" in metadata and "extra == \"train\"" in metadata
    base = [line for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any("tensorflow" in line or "transformers" in line for line in base), base
    with tarfile.open(dist["sdist"]) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert [n for n in (*DIST_FILES, *files) if n not in in_sdist] == []


@pytest.fixture(scope="module")
def demo(dist, tmp_path_factory) -> dict:
    """The wheel installed into a folder of its own and the demo run from it, outside the
    checkout, with this virtualenv's TensorFlow and transformers (the train extra) and without
    the serve extra's web server."""
    target = dist["root"] / "target"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--target", str(target), str(dist["wheel"])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cwd = tmp_path_factory.mktemp("demo")
    argv = ["--config", "demo", "--epochs", "1", "--max-train-samples", "300",
            "--max-eval-samples", "100", "--max-length", "64"]
    done = subprocess.run([sys.executable, "-c", WITHOUT_SERVE, *argv], cwd=cwd,
                          env=clean_env(PYTHONPATH=str(target)), capture_output=True, text=True,
                          timeout=1200)
    return {"target": target, "cwd": cwd, "done": done}


def test_the_wheel_runs_the_demo_from_its_own_files(demo, dist):
    done, cwd = demo["done"], demo["cwd"]
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"tfsent from {demo['target'] / 'tfsent' / '__init__.py'}"
    assert (cwd / "exported/tfsent/1/saved_model.pb").is_file()
    card = (cwd / "runs/demo/README.md").read_text()  # from the wheel's model card template
    assert card.startswith("---\n") and "## Intended use and limitations" in card
    config = json.loads((cwd / "runs/demo/config.json").read_text())
    assert config["model"]["model"] == "tiny" and config["train"]["export_dir"] == "exported"
    # What to run next, for this install: the serve extra, from the wheel it came from.
    assert lines[-3:] == [
        'next:       python -m tfsent.predict --saved-model exported/tfsent '
        '"a wonderful, moving film"',
        f"            pip install '{dist['wheel']}[serve]'",
        "            python -m tfsent.serve --model_name=tfsent --model_base_path=exported/tfsent",
    ]


@pytest.fixture(scope="module")
def client_python(dist) -> Path:
    """A fresh virtualenv with the wheel's base install; numpy, grpcio, protobuf and httpx
    come from PyPI."""
    venv = dist["root"] / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(dist["wheel"])],
                          capture_output=True, text=True, timeout=900, env=clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def test_the_wheel_in_a_fresh_virtualenv_scores_reviews(client_python, demo, dist):
    from tfsent.client import SavedModelPredictor
    from tfsent.model_server.process import start_server

    cwd, env = demo["cwd"], clean_env()
    check = subprocess.run(
        [str(client_python), "-c", "import importlib.util as u, tfsent.client; "
         "print(tfsent.client.__file__, u.find_spec('tensorflow') is None)"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    location, no_tensorflow = check.stdout.split()
    assert Path(location).is_relative_to(client_python.parents[1]) and no_tensorflow == "True"

    export = cwd / "exported" / "tfsent"
    with SavedModelPredictor(export) as predictor:
        expected = predictor.predict(REVIEWS)
    with start_server(export, timeout=300) as server:  # 2 cores shared: be patient
        for address in (f"grpc://{server.grpc_address}", server.rest_url):
            done = subprocess.run(
                [str(client_python), "-m", "tfsent.predict", "--server", address,
                 "--format", "jsonl", *REVIEWS],
                cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            assert (done.returncode, done.stderr) == (0, ""), done.stderr
            rows = [json.loads(line) for line in done.stdout.splitlines()]
            assert [r["label"] for r in rows] == [p.label for p in expected]
            for row, p in zip(rows, expected, strict=True):
                assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-5)

    # Training needs the train extra: one line, naming the install that adds it to this wheel.
    done = subprocess.run([str(client_python), "-m", "tfsent.fit", "--config", "demo"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (
        2, f"error: training needs the train extra: pip install '{dist['wheel']}[train]'\n")
