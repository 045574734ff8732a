"""Fixtures of both client test files: the local model server over the tiny export."""

from __future__ import annotations

import json

import pytest

from tfsent.model_server.process import REPO, external_addresses, server_addresses


@pytest.fixture(scope="session")
def served(served_version, tmp_path_factory):
    """The local server run with serving/'s own batching and monitoring configs and a copy of
    models.config pointing base_path at the export (in the container it is /models/tfsent), or
    the external TF Serving of TFSENT_TEST_GRPC/REST."""
    if external_addresses() is not None:
        with server_addresses() as addresses:
            yield addresses
        return
    config = (REPO / "serving" / "models.config").read_text()
    assert 'base_path: "/models/tfsent"' in config
    models_config = tmp_path_factory.mktemp("config") / "models.config"
    models_config.write_text(
        config.replace('"/models/tfsent"', json.dumps(str(served_version.parent)))
    )
    args = [
        f"--model_config_file={models_config}",
        "--enable_batching",
        f"--batching_parameters_file={REPO / 'serving' / 'batching.config'}",
        f"--monitoring_config_file={REPO / 'serving' / 'monitoring.config'}",
    ]
    with server_addresses(None, "tfsent", args, timeout=120) as addresses:
        yield addresses
