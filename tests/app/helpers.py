"""Helpers for tests/app/test_app.py: the app and a model server as subprocesses, and Debian's
Chromium driven by Playwright.

The browser is ``/usr/bin/chromium`` (``apt-get install chromium``): a browser build that
downloads itself (``playwright install``) cannot be fetched here. Without it, or without the
``playwright`` package, the browser tests skip with one line, unless ``TFSENT_REQUIRE_BROWSER=1``
(CI), where they fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tfsent.model_server.process import REPO, ServerProcess, server_env, wait_available

CHROMIUM = Path(os.environ.get("TFSENT_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER_ENV = "TFSENT_REQUIRE_BROWSER"
# The network is closed here: nothing in the browser may try to phone home and wait on it.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no 'playwright install')"
    return None


def browser_required() -> bool:
    return os.environ.get(REQUIRE_BROWSER_ENV) == "1"


@contextmanager
def chromium_context(viewport: dict[str, int]) -> Iterator[Any]:
    """A Playwright browser context on Debian's Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="tfsent-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport=viewport,
                accept_downloads=True,
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class AppProcess:
    """``python -m tfsent.app ... --port 0`` in a subprocess; ``url`` is where it listens."""

    def __init__(self, args: list[str], timeout: float = 90) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="tfsent-app-"))
        self.log_path = self.log_dir / "app.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tfsent.app", *args, "--port", "0"],
                cwd=REPO, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(r"http://\S+/", self.log())
            if found:
                self.url = found.group(0)
                self.first_line = self.log().splitlines()[0]
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the app did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM as a person's Ctrl+C would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the app did not stop:\n{self.log()[-3000:]}") from None
        if code == 0:
            shutil.rmtree(self.log_dir, ignore_errors=True)
        return code


def start_server_on(
    model_base_path: Path, grpc_port: int, rest_port: int, model_name: str = "tfsent",
    timeout: float = 90,
) -> ServerProcess:
    """``python -m tfsent.serve`` on the given ports, as ``start_server`` does on free ones:
    restarting a stopped server where the app already points."""
    log_dir = Path(tempfile.mkdtemp(prefix="tfsent-serve-"))
    log_path = log_dir / "server.log"
    args = [
        sys.executable, "-m", "tfsent.serve", f"--port={grpc_port}",
        f"--rest_api_port={rest_port}", "--host=127.0.0.1", f"--model_name={model_name}",
        f"--model_base_path={model_base_path}",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args, cwd=REPO, env=server_env(), stdout=log, stderr=subprocess.STDOUT
        )
    wait_available(f"http://127.0.0.1:{rest_port}", model_name, time.monotonic() + timeout,
                   process, log_path)
    return ServerProcess(process, grpc_port, rest_port, model_name, log_path)
