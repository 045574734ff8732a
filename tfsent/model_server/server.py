"""The model server: gRPC (``grpcio``) and REST (FastAPI on uvicorn) over one ``ModelManager``.

Start-up follows ``tensorflow_model_server``: read the configs, load every model's versions
(warmup included), then open the gRPC and REST ports. Bad input (missing base path, no versions,
bad config file, port in use) is a ``UserError`` before anything is served. On SIGTERM/SIGINT it
stops accepting, lets in-flight requests finish (``grpc.Server.stop(grace)`` and uvicorn's
graceful shutdown), unloads the models and returns 0::

    options = ServerOptions(model_name="tfsent", model_base_path="exported/tfsent",
                            port=8500, rest_api_port=8501)
    sys.exit(serve(options))          # until SIGTERM

    with ModelServer(options) as server:   # in-process, e.g. for tests
        server.start()
        ...
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfsent.errors import UserError, fail

log = logging.getLogger("tfsent.serve")


@dataclass
class ServerOptions:
    """What ``python -m tfsent.serve`` takes (TF Serving's flag names)."""

    port: int = 8500
    rest_api_port: int = 8501
    host: str = "0.0.0.0"
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    monitoring_config_file: str | None = None
    rest_api_num_threads: int = 4 * (os.cpu_count() or 1)
    grpc_max_threads: int = 4 * (os.cpu_count() or 1)
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    saved_model_tags: str = "serve"
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    shutdown_grace_seconds: float = 30


def _check_port(value: int, flag: str, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= value <= 65535:
        fail(f"{flag} must be a port number {'0-' if allow_zero else '1-'}65535, got {value}")


def _listening_socket(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on sockets that say they are TCP, and
    # without it each reply on a kept-alive connection waits ~40 ms for the peer's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _check_free(host: str, port: int, flag: str) -> None:
    try:
        _listening_socket(host, port).close()
    except OSError as err:
        fail(
            f"cannot listen on {host}:{port} ({err.strerror}: port in use?); choose another {flag}"
        )


class ModelServer:
    """The configured server: ``start()`` loads models and opens ports; ``stop()`` drains."""

    def __init__(self, options: ServerOptions) -> None:
        """Check the options and read the config files (fast: nothing heavy is imported)."""
        from tfsent.model_server import server_config

        self.options = options
        _check_port(options.port, "--port", allow_zero=False)
        _check_port(options.rest_api_port, "--rest_api_port", allow_zero=True)
        if options.port == options.rest_api_port:
            fail(f"--port and --rest_api_port are both {options.port}; give them different ports")
        if options.model_config_file and options.model_base_path:
            fail("give either --model_config_file or --model_name/--model_base_path, not both")
        self._config_text: str | None = None
        if options.model_config_file:
            self.config = server_config.read_model_server_config(options.model_config_file)
            # What --model_config_file_poll_wait_seconds compares with to see a change.
            self._config_text = Path(options.model_config_file).read_text(encoding="utf-8")
        elif options.model_base_path:
            self.config = server_config.single_model_config(
                options.model_name, Path(options.model_base_path).absolute()
            )
        else:
            fail(
                "no model to serve; give --model_base_path (and --model_name) "
                "or --model_config_file"
            )
        for model in self.config.model_config_list.config:
            server_config.check_base_path(model)
        self.batching = None
        if options.batching_parameters_file and not options.enable_batching:
            fail("--batching_parameters_file needs --enable_batching")
        if options.enable_batching:
            self.batching = (
                server_config.read_batching_parameters(options.batching_parameters_file)
                if options.batching_parameters_file
                else server_config.BatchingParameters()
            )
            if self.batching.pad_variable_length_inputs:
                log.warning(
                    "pad_variable_length_inputs is not implemented: requests merge only "
                    "when their inputs have the same shape past dimension 0"
                )
        self.monitoring = (
            server_config.read_monitoring_config(options.monitoring_config_file)
            if options.monitoring_config_file
            else server_config.MonitoringConfig()
        )
        if self.monitoring.prometheus_enabled and not options.rest_api_port:
            fail("prometheus metrics are served on the REST port; set --rest_api_port")
        self.metrics: Any = None
        self.manager: Any = None
        self._grpc_server: Any = None
        self._rest_server: Any = None
        self._rest_socket: socket.socket | None = None
        self._rest_thread: threading.Thread | None = None
        self._config_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._serving = False  # the ports are open (so stopping is worth logging)

    def _create_manager(self) -> None:
        from tfsent.model_server.manager import ManagerOptions, ModelManager
        from tfsent.model_server.metrics import ServingMetrics

        o = self.options
        tags = tuple(t for t in o.saved_model_tags.split(",") if t)
        endpoints = f"(gRPC {o.host}:{o.port}"
        endpoints += f", REST {o.host}:{o.rest_api_port})" if o.rest_api_port else ")"
        self.metrics = ServingMetrics()
        self.manager = ModelManager(
            ManagerOptions(
                file_system_poll_wait_seconds=o.file_system_poll_wait_seconds,
                saved_model_tags=tags or ("serve",),
                enable_model_warmup=o.enable_model_warmup,
                warmup_iterations=max(o.num_request_iterations_for_warmup, 1),
                batching=self.batching,
                allow_version_labels_for_unavailable_models=(
                    o.allow_version_labels_for_unavailable_models
                ),
                endpoints=endpoints,
            ),
            self.metrics,
        )

    # ------------------------------------------------------------------------------------------

    def _bind_ports(self) -> None:
        """Claim both ports before the (slow) model load, so 'port in use' fails fast."""
        import grpc

        o = self.options
        # Probe with a plain socket first: gRPC's own failed bind also logs C++ noise.
        for port, flag in ((o.port, "--port"), (o.rest_api_port, "--rest_api_port")):
            if port:
                _check_free(o.host, port, flag)
        self._grpc_server = grpc.server(
            ThreadPoolExecutor(max_workers=o.grpc_max_threads, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
                # Without this a second server could bind the same port next to ours.
                ("grpc.so_reuseport", 0),
            ],
        )
        address = f"{o.host}:{o.port}"
        try:
            bound = self._grpc_server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            fail(f"cannot listen for gRPC on {address} (port in use?); choose another --port")
        if o.rest_api_port:
            try:
                self._rest_socket = _listening_socket(o.host, o.rest_api_port)
            except OSError as err:
                fail(
                    f"cannot listen on {o.host}:{o.rest_api_port} ({err.strerror}: port in use?); "
                    "choose another --rest_api_port"
                )

    def start(self) -> None:
        """Bind the ports, load the models, then serve gRPC and REST."""
        o = self.options
        self._bind_ports()
        import tensorflow as tf

        from tfsent.model_server.grpc_api import add_servicers
        from tfsent.model_server.status import RequestError

        if o.tensorflow_intra_op_parallelism:
            tf.config.threading.set_intra_op_parallelism_threads(o.tensorflow_intra_op_parallelism)
        if o.tensorflow_inter_op_parallelism:
            tf.config.threading.set_inter_op_parallelism_threads(o.tensorflow_inter_op_parallelism)
        self._create_manager()
        add_servicers(self._grpc_server, self.manager, self.metrics)
        try:
            self.manager.configure(self.config, startup=True)
        except RequestError as err:
            fail(
                f"{err.message}; start with --allow_version_labels_for_unavailable_models "
                "or add version_labels once those versions are loaded"
            )
        self.manager.load_initial()
        self.manager.start()
        self._grpc_server.start()
        self._serving = True
        log.info("Running gRPC ModelServer at %s:%d ...", o.host, o.port)
        if self._rest_socket is not None:
            self._start_rest()
            log.info("Exporting HTTP/REST API at:%s:%d ...", o.host, o.rest_api_port)
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(
                target=self._poll_config, name="config-poller", daemon=True
            )
            self._config_thread.start()

    def _start_rest(self) -> None:
        import uvicorn

        from tfsent.model_server.rest_api import create_app

        o = self.options
        prometheus = self.monitoring.prometheus_path if self.monitoring.prometheus_enabled else None
        app = create_app(self.manager, self.metrics, prometheus, max(o.rest_api_num_threads, 1))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(o.shutdown_grace_seconds) or None,
        )
        self._rest_server = uvicorn.Server(config)
        ready = threading.Event()
        sock = self._rest_socket
        assert sock is not None

        def run() -> None:
            async def serve() -> None:
                # uvicorn's startup listens on our pre-bound socket; signals stay ours.
                server_task = asyncio.create_task(self._rest_server.serve(sockets=[sock]))
                while not self._rest_server.started and not server_task.done():
                    await asyncio.sleep(0.01)
                ready.set()
                await server_task

            asyncio.run(serve())
            ready.set()

        self._rest_thread = threading.Thread(target=run, name="rest-api", daemon=True)
        self._rest_thread.start()
        ready.wait()
        if not self._rest_server.started:
            fail(f"the REST API did not start on {o.host}:{o.rest_api_port}")

    def _poll_config(self) -> None:
        from tfsent.model_server.server_config import read_model_server_config
        from tfsent.model_server.status import RequestError

        path = self.options.model_config_file
        last = self._config_text
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                text = Path(path).read_text(encoding="utf-8")
                if text == last:
                    continue
                last = text  # a bad file is reported once, not at every poll
                self.manager.configure(read_model_server_config(path))
                log.info("Reloaded the model config from %s", path)
            except (OSError, UserError, RequestError) as err:
                log.error("Keeping the current model config; reloading %s failed: %s", path, err)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, finish in-flight requests (up to ``grace`` seconds), unload models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.options.shutdown_grace_seconds if grace is None else grace
        if self._serving:
            log.info("Shutting down: draining in-flight requests (up to %gs)", grace)
        grpc_done = self._grpc_server.stop(grace) if self._grpc_server is not None else None
        if self._rest_server is not None:
            self._rest_server.should_exit = True
        if self._rest_thread is not None:
            self._rest_thread.join(grace + 5)
        elif self._rest_socket is not None:
            self._rest_socket.close()
        if grpc_done is not None:
            grpc_done.wait(grace + 5)
        if self.manager is not None:
            self.manager.stop()
        if self._serving:
            log.info("Server stopped")

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(options: ServerOptions) -> int:
    """Run the server until SIGTERM or SIGINT; 0 after a clean drain."""
    import prometheus_client

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s] %(message)s",
    )
    prometheus_client.disable_created_metrics()
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    server = ModelServer(options)
    try:
        server.start()
        while not stop.wait(0.5):
            pass
        log.info("Received %s", received[0] if received else "stop")
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
