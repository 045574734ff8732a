"""``python -m tfsent.app``: serve the review page on http://127.0.0.1:8080 (see ``tfsent.app``).

::

    python -m tfsent.app --server grpc://localhost:8500 [--model-name tfsent] [--port 8080]
    python -m tfsent.app --saved-model exported/tfsent
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import signal
import socket
import sys

from tfsent.cli import (
    add_model_source_options,
    add_verbose_flag,
    configure_logging,
    install_command,
)
from tfsent.errors import OneLineArgumentParser, fail, run_cli

DEFAULT_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m tfsent.app",
        description="A web page to score reviews with the sentiment model: one review, a batch "
        "pasted or uploaded as CSV, model info.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_source_options(
        parser, "Export directory (its newest integer version, or a version folder), scored in "
        "this process; no server needed.",
    )
    parser.add_argument("--model-name", default="tfsent", help="Served model name (--server).")
    parser.add_argument("--version", type=int, help="Model version (default: the newest).")
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address the page listens on; 0.0.0.0 opens it to "
        "the network, with no login."
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Port; 0 picks a free one.")
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds per model request.")
    parser.add_argument("--retries", type=int, default=1, help="Retries when the server is "
                        "UNAVAILABLE (the page itself retries too).")
    parser.add_argument("--max-reviews", type=int, default=1000, help="Most reviews per batch.")
    parser.add_argument("--max-upload-mb", type=float, default=5.0,
                        help="Largest upload or request body, in MB.")
    parser.add_argument("--log-level", choices=("warning", "info", "debug"), default="warning",
                        help="Server log level; 'info' also logs every request.")
    add_verbose_flag(parser)
    return parser


def listen(host: str, port: int) -> socket.socket:
    """A bound socket, so that a taken port is a one-line error before anything loads."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        fail(f"cannot listen on --host {host}: {err.strerror}; give an address like 127.0.0.1")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            fail(f"port {port} on {host} is in use; pick another with --port (0 picks a free one)")
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}; check --host and --port")
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not 0 <= args.port <= 65535:
        fail(f"--port must be 0..65535, got {args.port}")
    if args.timeout <= 0:
        fail(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    if args.retries < 0:
        fail(f"--retries must be 0 or more, got {args.retries}")
    if args.max_reviews < 1:
        fail(f"--max-reviews must be at least 1, got {args.max_reviews}")
    if args.max_upload_mb <= 0:
        fail(f"--max-upload-mb must be more than 0, got {args.max_upload_mb:g}")
    try:
        import uvicorn

        from tfsent.app.web import Limits, create_app
    except ImportError as err:
        fail(f"the app needs {err.name or err}: {install_command('app')}")
    from tfsent.app.backends import SavedModelBackend, ServerBackend

    backend: ServerBackend | SavedModelBackend | None = None
    if args.server is not None:  # cheap, and checks the address before the port is taken
        backend = ServerBackend(args.server, model_name=args.model_name, version=args.version,
                                timeout=args.timeout, retries=args.retries)
    sock = listen(args.host, args.port)
    try:
        if backend is None:  # loads TensorFlow and the model: after the port is known free
            backend = SavedModelBackend(args.saved_model, version=args.version)
        limits = Limits(max_reviews=args.max_reviews,
                        max_body_bytes=int(args.max_upload_mb * 1024 * 1024))
        app = create_app(backend, limits, bind_host=args.host)
        host, port = sock.getsockname()[:2]
        # A name (localhost) as given: that is the Host header the page accepts.
        shown = args.host if _is_name(args.host) else f"[{host}]" if ":" in host else host
        print(f"tfsent app on http://{shown}:{port}/ (model: {backend.describe()}); "
              "Ctrl+C stops it", flush=True)
        config = uvicorn.Config(app, log_level=args.log_level,
                                access_log=args.log_level != "warning",
                                timeout_graceful_shutdown=10)
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except (_Stopped, KeyboardInterrupt):
            # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again
            # for the previous handler: for this CLI that is the normal way to stop.
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        backend.close()
    finally:
        sock.close()
    return 0


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


class _Stopped(Exception):
    pass


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


if __name__ == "__main__":
    sys.exit(run_cli(main))
