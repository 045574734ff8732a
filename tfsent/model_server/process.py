"""Run ``python -m tfsent.serve`` in a subprocess for end-to-end tests, or use a real server.

Local server (the default)::

    from tfsent.model_server.process import start_server

    with start_server(exported / "tfsent", extra_args=["--enable_batching"]) as server:
        server.grpc_address   # "127.0.0.1:<port>"
        server.rest_url       # "http://127.0.0.1:<port>"
    # leaving the block sends SIGTERM and checks the process exited 0

It picks free loopback ports, runs offline (``HF_HUB_OFFLINE=1`` ...), and returns once
``GET /v1/models/<name>`` reports a version AVAILABLE. It works from an installed ``tfsent``
(the child runs the same interpreter) and from a source checkout that is not installed (the
folder holding the ``tfsent`` package then goes on the child's ``PYTHONPATH``); the child runs
in the caller's working directory, so relative paths mean the same to both.

**External server.** Set ``TFSENT_TEST_GRPC`` (``host:8500``) and ``TFSENT_TEST_REST``
(``http://host:8501``) to test a real ``tensorflow_model_server`` (e.g. the
``serving/docker-compose.yml`` container) serving the same export: ``server_addresses()`` then
yields those addresses instead of starting a server. Tests that control the server (dropping
in a new version, SIGTERM, start-up errors) need the local one; skip them when
``external_addresses()`` is not None.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tfsent

# The folder holding the ``tfsent`` package: a source checkout's root, or site-packages.
PACKAGE_ROOT = Path(tfsent.__file__).resolve().parents[1]
# Kept for callers that still import it: the checkout's root when tfsent runs from one.
REPO = PACKAGE_ROOT
GRPC_ENV = "TFSENT_TEST_GRPC"
REST_ENV = "TFSENT_TEST_REST"


@dataclass(frozen=True)
class ServerAddresses:
    grpc_address: str
    rest_url: str
    model_name: str = "tfsent"


def external_addresses(model_name: str = "tfsent") -> ServerAddresses | None:
    """The external server named by TFSENT_TEST_GRPC / TFSENT_TEST_REST, if both are set."""
    grpc_address, rest_url = os.environ.get(GRPC_ENV), os.environ.get(REST_ENV)
    if grpc_address and rest_url:
        return ServerAddresses(grpc_address, rest_url.rstrip("/"), model_name)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_site_packages() -> bool:
    roots = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return PACKAGE_ROOT in roots


def server_env() -> dict[str, str]:
    """The environment for a server subprocess: offline, quiet, this ``tfsent`` importable."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1"
    )
    if not _in_site_packages():  # a checkout, installed editable or not
        paths = [str(PACKAGE_ROOT), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


class ServerProcess:
    """A running ``python -m tfsent.serve``; a context manager that stops it on exit."""

    def __init__(
        self,
        process: subprocess.Popen,
        grpc_port: int,
        rest_port: int,
        model_name: str,
        log_path: Path,
    ) -> None:
        self.process = process
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.model_name = model_name
        self.log_path = log_path
        self.grpc_address = f"127.0.0.1:{grpc_port}"
        self.rest_url = f"http://127.0.0.1:{rest_port}"

    @property
    def addresses(self) -> ServerAddresses:
        return ServerAddresses(self.grpc_address, self.rest_url, self.model_name)

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait for the exit, return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"server did not stop within {timeout}s:\n{self.log()[-3000:]}"
            ) from None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        code = self.stop()
        if exc_type is None and code != 0:
            raise AssertionError(f"server exited with {code}:\n{self.log()[-3000:]}")
        if exc_type is None:  # the log is kept only when something went wrong
            shutil.rmtree(self.log_path.parent, ignore_errors=True)


def _get_json(url: str, timeout: float = 2) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


def wait_available(
    rest_url: str,
    model_name: str,
    deadline: float,
    process: subprocess.Popen | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll ``GET /v1/models/<name>`` until a version is AVAILABLE (or the process died)."""
    while True:
        if process is not None and process.poll() is not None:
            log = log_path.read_text(errors="replace") if log_path else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{log[-3000:]}")
        try:
            status = _get_json(f"{rest_url}/v1/models/{model_name}")
            if any(v.get("state") == "AVAILABLE" for v in status.get("model_version_status", [])):
                return
        except (OSError, ValueError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            if process is not None:
                process.kill()
                process.wait()
            log = log_path.read_text(errors="replace") if log_path else ""
            raise TimeoutError(
                f"no AVAILABLE version of {model_name} at {rest_url}:\n{log[-3000:]}"
            )
        time.sleep(0.2)


def start_server(
    model_base_path: str | Path | None,
    model_name: str = "tfsent",
    extra_args: Sequence[str] = (),
    timeout: float = 60,
) -> ServerProcess:
    """Launch the server on free ports; returns once the model is AVAILABLE.

    ``model_base_path=None`` leaves the model to ``extra_args`` (e.g. ``--model_config_file``).
    """
    log_dir = Path(tempfile.mkdtemp(prefix="tfsent-serve-"))
    for attempt in range(3):  # a free port can be taken between probing and binding
        grpc_port, rest_port = free_port(), free_port()
        while rest_port == grpc_port:
            rest_port = free_port()
        log_path = log_dir / f"server-{attempt}.log"
        args = [
            sys.executable,
            "-m",
            "tfsent.serve",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--host=127.0.0.1",
        ]
        if model_base_path is not None:
            args += [f"--model_name={model_name}", f"--model_base_path={model_base_path}"]
        args += list(extra_args)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, env=server_env(), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_available(
                f"http://127.0.0.1:{rest_port}",
                model_name,
                time.monotonic() + timeout,
                process,
                log_path,
            )
        except RuntimeError:
            if "port in use" in log_path.read_text(errors="replace") and attempt < 2:
                continue
            raise
        return ServerProcess(process, grpc_port, rest_port, model_name, log_path)
    raise AssertionError("unreachable")


@contextmanager
def server_addresses(
    model_base_path: str | Path | None = None,
    model_name: str = "tfsent",
    extra_args: Sequence[str] = (),
    timeout: float = 60,
) -> Iterator[ServerAddresses]:
    """The external server's addresses if TFSENT_TEST_GRPC/REST are set, else a local one's."""
    external = external_addresses(model_name)
    if external is not None:
        wait_available(external.rest_url, model_name, time.monotonic() + timeout)
        yield external
        return
    if model_base_path is None and not extra_args:
        raise ValueError("give model_base_path (or extra_args) to start a local server")
    with start_server(model_base_path, model_name, extra_args, timeout) as server:
        yield server.addresses
