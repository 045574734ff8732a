"""The model server: gRPC (``grpc.aio``) and REST (FastAPI on uvicorn) over one ``ServerCore``
and its ``PredictionService``.

Start-up follows ``tensorflow_model_server``: read the configs, load every model's versions
(warmup included), then open the gRPC and REST ports. Bad input (missing base path, no versions,
bad config file, port in use) is a ``UserError`` before anything is served. On SIGTERM/SIGINT it
stops accepting, lets in-flight requests finish for up to ``shutdown_grace_seconds``, answers
the ones still unfinished then with UNAVAILABLE (HTTP 503: clients retry them elsewhere),
unloads the models and returns 0. Model runs of those answered requests that are still going
``ABORT_MARGIN_SECONDS`` later cannot be stopped (TensorFlow has no way to), and the
interpreter's exit would tear TensorFlow down under them: ``serve`` then ends the process
at once (exit code 0) instead::

    options = ServerOptions(model_name="tfsent", model_base_path="exported/tfsent")
    sys.exit(serve(options))          # until SIGTERM

    with ModelServer(options) as server:   # in-process, e.g. for tests
        server.start()
        ...

``ServerOptions`` is what ``python -m tfsent.serve`` takes: its fields are the flags (TF
Serving's names and defaults; tfsent's own additions say so), and its field help is the
``--help`` text.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfsent.errors import UserError, fail

log = logging.getLogger("tfsent.serve")

MIB = 1024 * 1024
# Time the transports get, after the grace period, to send the UNAVAILABLE answers.
ABORT_MARGIN_SECONDS = 2.0


def _threads() -> int:
    return 4 * (os.cpu_count() or 1)


def _flag(default: Any = None, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    if "default_factory" in kwargs:
        return field(metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help})


@dataclass
class ServerOptions:
    """What ``python -m tfsent.serve`` takes (TF Serving's flag names)."""

    port: int = _flag(8500, "gRPC port")
    rest_api_port: int = _flag(
        8501,
        "REST port; 0 turns the REST API off (TF Serving's default is 0; 8501 here, the port "
        "serving/docker-compose.yml gives it)",
    )
    host: str = _flag(
        "127.0.0.1",
        "address both ports listen on. tfsent extension: TF Serving listens on every address; "
        "this development server only on loopback unless told, e.g. --host=0.0.0.0",
    )
    model_name: str = _flag("default", "name of the model (with --model_base_path)")
    model_base_path: str | None = _flag(
        None, "folder holding the model's version folders (names of ASCII digits: 1/, 2/, ...)"
    )
    model_config_file: str | None = _flag(
        None,
        "text-format ModelServerConfig (model_config_list: names, base paths, version "
        "policies, version labels), instead of --model_name/--model_base_path",
    )
    model_config_file_poll_wait_seconds: float = _flag(
        0, "re-read --model_config_file this often (seconds; 0: never)"
    )
    file_system_poll_wait_seconds: float = _flag(
        1, "look for new model versions this often (seconds; 0: only at startup)"
    )
    max_num_load_retries: int = _flag(
        5,
        "times a version that failed to load (e.g. a copy still in progress) is tried again "
        "before giving up; 0: once only. Versions already serving stay up meanwhile",
    )
    load_retry_interval_micros: int = _flag(
        60_000_000, "wait between load retries, in microseconds (negative: no wait)"
    )
    enable_batching: bool = _flag(
        False, "merge concurrent requests into batches (server-side batching)"
    )
    batching_parameters_file: str | None = _flag(
        None,
        "text-format BatchingParameters (max_batch_size, batch_timeout_micros, "
        "num_batch_threads, max_enqueued_batches, allowed_batch_sizes)",
    )
    monitoring_config_file: str | None = _flag(
        None,
        "text-format MonitoringConfig; prometheus_config { enable: true } serves metrics on "
        "the REST port",
    )
    ssl_config_file: str | None = _flag(
        None,
        "text-format SSLConfig (server_key, server_cert and custom_ca as PEM texts, "
        "client_verify): serve gRPC over TLS (REST stays plain HTTP, as in TF Serving)",
    )
    grpc_channel_arguments: str = _flag(
        "",
        "comma-separated gRPC server channel arguments, e.g. "
        "grpc.max_concurrent_streams=100; they override the server's own, such as the "
        "message size limit of --grpc_max_receive_message_bytes",
    )
    grpc_max_threads: int = _flag(
        help="gRPC predict requests run at once (default: 4 per CPU)", default_factory=_threads
    )
    rest_api_num_threads: int = _flag(
        help="REST predict requests run at once (default: 4 per CPU)", default_factory=_threads
    )
    rest_api_timeout_in_ms: int = _flag(
        30000,
        "REST requests not answered within this many ms get 504 DEADLINE_EXCEEDED (a request "
        "still queued then is never run); 0: no limit",
    )
    grpc_default_timeout_in_ms: int = _flag(
        30000,
        "tfsent extension: the deadline of gRPC requests whose client sets none "
        "(DEADLINE_EXCEEDED after it); 0: none. A client's own deadline always applies",
    )
    max_queued_requests: int = _flag(
        64,
        "tfsent extension: predict requests that may wait, per API, when all threads are busy; "
        "one more is refused at once with UNAVAILABLE / HTTP 503, which clients retry",
    )
    rest_api_max_body_bytes: int = _flag(
        8 * MIB,
        "tfsent extension: larger REST request bodies are refused with HTTP 413 (the rest of "
        "the body is then read and dropped, for a bounded time, so that clients that send it "
        "all before reading get the answer); 0: no limit",
    )
    grpc_max_receive_message_bytes: int = _flag(
        8 * MIB,
        "tfsent extension: larger gRPC requests fail with RESOURCE_EXHAUSTED (TF Serving takes "
        "up to 2 GiB; set grpc.max_receive_message_length in --grpc_channel_arguments there); "
        "0: no limit",
    )
    max_instances_per_request: int = _flag(
        256,
        "tfsent extension: requests with more instances (rows) are refused with 400 / "
        "INVALID_ARGUMENT before they run; 0: no limit",
    )
    allow_version_labels_for_unavailable_models: bool = _flag(
        False, "allow version_labels on versions that are not loaded (yet)"
    )
    allow_reload_config_request: bool = _flag(
        False,
        "tfsent extension: accept gRPC HandleReloadConfigRequest (it replaces the served models "
        "and can load any folder the server can read, so any client could; off by default)",
    )
    enable_model_warmup: bool = _flag(
        True, "replay assets.extra/tf_serving_warmup_requests before serving a version"
    )
    num_request_iterations_for_warmup: int = _flag(1, "times each warmup request is replayed")
    saved_model_tags: str = _flag("serve", "comma-separated tags of the MetaGraph to load")
    tensorflow_intra_op_parallelism: int = _flag(
        0, "threads within one op (0: TensorFlow's choice)"
    )
    tensorflow_inter_op_parallelism: int = _flag(0, "ops run at once (0: TensorFlow's choice)")
    shutdown_grace_seconds: float = _flag(
        30,
        "tfsent extension: on SIGTERM, wait this long for in-flight requests, then answer the "
        "rest with UNAVAILABLE / HTTP 503",
    )


def _check_port(value: int, flag: str, allow_zero: bool) -> None:
    if not (0 if allow_zero else 1) <= value <= 65535:
        fail(f"{flag} must be a port number {'0-' if allow_zero else '1-'}65535, got {value}")


def _check_options(o: ServerOptions) -> None:
    _check_port(o.port, "--port", allow_zero=False)
    _check_port(o.rest_api_port, "--rest_api_port", allow_zero=True)
    if o.port == o.rest_api_port:
        fail(f"--port and --rest_api_port are both {o.port}; give them different ports")
    if o.model_config_file and o.model_base_path:
        fail("give either --model_config_file or --model_name/--model_base_path, not both")
    at_least = {"grpc_max_threads": 1, "rest_api_num_threads": 1}
    for name in (
        "max_num_load_retries",
        "max_queued_requests",
        "rest_api_timeout_in_ms",
        "grpc_default_timeout_in_ms",
        "rest_api_max_body_bytes",
        "grpc_max_receive_message_bytes",
        "max_instances_per_request",
        "file_system_poll_wait_seconds",
        "model_config_file_poll_wait_seconds",
        "shutdown_grace_seconds",
        *at_least,
    ):
        value, low = getattr(o, name), at_least.get(name, 0)
        if value < low:
            fail(f"--{name} must be at least {low}, got {value}")


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
        _check_options(options)
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
        self.ssl = (
            server_config.read_ssl_config(options.ssl_config_file)
            if options.ssl_config_file
            else None
        )
        self.channel_arguments = server_config.parse_grpc_channel_arguments(
            options.grpc_channel_arguments
        )
        self.metrics: Any = None
        self.core: Any = None
        self.service: Any = None
        self.queues: dict[str, Any] = {}
        self._grpc_server: Any = None
        self._grpc_loop: asyncio.AbstractEventLoop | None = None
        self._grpc_thread: threading.Thread | None = None
        self._rest_server: Any = None
        self._rest_socket: socket.socket | None = None
        self._rest_thread: threading.Thread | None = None
        self._config_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._idle = True  # after stop(): no thread runs a model
        self._serving = False  # the ports are open (so stopping is worth logging)

    def _create_core(self) -> None:
        from tfsent.model_server.core import CoreOptions, ServerCore
        from tfsent.model_server.executor import RequestQueue
        from tfsent.model_server.metrics import ServingMetrics
        from tfsent.model_server.service import PredictionService, replay_warmup

        o = self.options
        tags = tuple(t for t in o.saved_model_tags.split(",") if t)
        endpoints = f"(gRPC {o.host}:{o.port}"
        endpoints += f", REST {o.host}:{o.rest_api_port})" if o.rest_api_port else ")"
        self.metrics = ServingMetrics()
        warmup = None
        if o.enable_model_warmup:
            warmup = functools.partial(
                replay_warmup,
                iterations=max(o.num_request_iterations_for_warmup, 1),
                max_instances=o.max_instances_per_request,
            )
        self.core = ServerCore(
            CoreOptions(
                file_system_poll_wait_seconds=o.file_system_poll_wait_seconds,
                saved_model_tags=tags or ("serve",),
                batching=self.batching,
                allow_version_labels_for_unavailable_models=(
                    o.allow_version_labels_for_unavailable_models
                ),
                max_num_load_retries=o.max_num_load_retries,
                load_retry_interval_seconds=o.load_retry_interval_micros / 1e6,
                allow_reload_config_request=o.allow_reload_config_request,
                endpoints=endpoints,
            ),
            self.metrics,
            warmup,
        )
        self.service = PredictionService(self.core, o.max_instances_per_request)
        self.queues["grpc"] = RequestQueue("gRPC", o.grpc_max_threads, o.max_queued_requests)
        if o.rest_api_port:
            self.queues["rest"] = RequestQueue(
                "REST", o.rest_api_num_threads, o.max_queued_requests
            )

    # ------------------------------------------------------------------------------------------

    def _grpc_options(self) -> list[tuple[str, Any]]:
        o = self.options
        options: dict[str, Any] = {
            "grpc.max_receive_message_length": o.grpc_max_receive_message_bytes or -1,
            "grpc.max_send_message_length": -1,
            # Without this a second server could bind the same port next to ours.
            "grpc.so_reuseport": 0,
        }
        options.update(self.channel_arguments)
        return list(options.items())

    def _credentials(self) -> Any:
        import grpc

        ssl = self.ssl
        if ssl is None:
            return None
        try:
            return grpc.ssl_server_credentials(
                [(ssl.server_key.encode(), ssl.server_cert.encode())],
                root_certificates=ssl.custom_ca.encode() if ssl.client_verify else None,
                require_client_auth=ssl.client_verify,
            )
        except Exception as err:
            fail(f"--ssl_config_file {self.options.ssl_config_file}: unusable key or certificate "
                 f"({type(err).__name__}); give PEM texts of a matching key and certificate")

    def _in_grpc_loop(self, coroutine: Any, timeout: float | None = None) -> Any:
        assert self._grpc_loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._grpc_loop).result(timeout)

    def _bind_ports(self) -> None:
        """Claim both ports before the (slow) model load, so 'port in use' fails fast."""
        import grpc

        o = self.options
        # Probe with a plain socket first: gRPC's own failed bind also logs C++ noise.
        for port, flag in ((o.port, "--port"), (o.rest_api_port, "--rest_api_port")):
            if port:
                _check_free(o.host, port, flag)
        credentials = self._credentials()
        self._grpc_loop = asyncio.new_event_loop()
        self._grpc_thread = threading.Thread(
            target=self._grpc_loop.run_forever, name="grpc-api", daemon=True
        )
        self._grpc_thread.start()
        # Many cheap calls (status, refusals) may be in flight; this bounds them all.
        backstop = 4 * (o.grpc_max_threads + o.max_queued_requests) + 64

        async def create() -> Any:
            return grpc.aio.server(options=self._grpc_options(), maximum_concurrent_rpcs=backstop)

        self._grpc_server = self._in_grpc_loop(create())
        address = f"{o.host}:{o.port}"
        try:
            if credentials is not None:
                bound = self._grpc_server.add_secure_port(address, credentials)
            else:
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
        self._create_core()
        add_servicers(
            self._grpc_server,
            self.core,
            self.service,
            self.queues["grpc"],
            self.metrics,
            o.grpc_default_timeout_in_ms / 1000 or None,
        )
        try:
            self.core.configure(self.config, startup=True)
        except RequestError as err:
            fail(
                f"{err.message}; start with --allow_version_labels_for_unavailable_models "
                "or add version_labels once those versions are loaded"
            )
        self.core.load_initial()
        self.core.start()
        self._in_grpc_loop(self._grpc_server.start())
        self._serving = True
        log.info(
            "Running gRPC ModelServer at %s:%d%s ...",
            o.host,
            o.port,
            " (TLS)" if self.ssl is not None else "",
        )
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
        app = create_app(
            self.core,
            self.service,
            self.queues["rest"],
            self.metrics,
            prometheus,
            max_body_bytes=o.rest_api_max_body_bytes,
            timeout=o.rest_api_timeout_in_ms / 1000 or None,
            max_instances=o.max_instances_per_request,
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Our own drain answers what is left at the grace period's end; this is a backstop.
            timeout_graceful_shutdown=o.shutdown_grace_seconds + 2 * ABORT_MARGIN_SECONDS,
            # Connections + requests at once beyond which uvicorn itself answers 503.
            limit_concurrency=4 * (o.rest_api_num_threads + o.max_queued_requests) + 64,
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
                self.core.configure(read_model_server_config(path))
                log.info("Reloaded the model config from %s", path)
            except (OSError, UserError, RequestError) as err:
                log.error("Keeping the current model config; reloading %s failed: %s", path, err)

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting, let in-flight requests finish for up to ``grace`` seconds, answer
        the rest with UNAVAILABLE, unload the models.

        True when no thread runs a model any more. False when model runs (whose requests were
        answered UNAVAILABLE) outlast the grace period by ``ABORT_MARGIN_SECONDS``: TensorFlow
        cannot stop a running kernel, so the process must then end without the interpreter's
        teardown, which would destroy TensorFlow's runtime under those runs (``serve`` does).
        """
        if self._stopped.is_set():
            return self._idle
        self._stopped.set()
        grace = self.options.shutdown_grace_seconds if grace is None else grace
        if self._serving:
            log.info("Shutting down: draining in-flight requests (up to %gs)", grace)
        grpc_done = None
        if self._grpc_server is not None and self._grpc_loop is not None:
            grpc_done = asyncio.run_coroutine_threadsafe(
                self._grpc_server.stop(grace + ABORT_MARGIN_SECONDS), self._grpc_loop
            )
        if self._rest_server is not None:
            self._rest_server.should_exit = True
        end = time.monotonic() + grace
        for name, queue in self.queues.items():
            if not queue.wait_idle(max(end - time.monotonic(), 0.0)):
                count = queue.abort("Server is shutting down; retry the request")
                log.warning("Grace period over: %d %s request(s) answered UNAVAILABLE", count, name)
        self._close_transports(grpc_done, grace)
        for queue in self.queues.values():
            queue.abort("Server is shutting down; retry the request")
            queue.stop(wait=False)  # no more runs start; the running ones are waited for below
        if self.core is not None:
            self._idle = self.core.stop(timeout=ABORT_MARGIN_SECONDS)
        if self._serving:
            log.info("Server stopped")
        return self._idle

    def _close_transports(self, grpc_done: Any, grace: float) -> None:
        """Wait for the gRPC server's stop and the REST thread, then end the gRPC loop."""
        if grpc_done is not None:
            try:
                grpc_done.result(grace + 2 * ABORT_MARGIN_SECONDS)
            except Exception:  # a stuck transport must not keep the process alive
                log.exception("stopping the gRPC server failed")
        if self._rest_thread is not None:
            self._rest_thread.join(grace + 2 * ABORT_MARGIN_SECONDS)
        elif self._rest_socket is not None:
            self._rest_socket.close()
        if self._grpc_loop is not None:
            self._grpc_loop.call_soon_threadsafe(self._grpc_loop.stop)
            if self._grpc_thread is not None:
                self._grpc_thread.join(5)

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
        idle = server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not idle:
        # Threads still run TensorFlow kernels for requests already answered: the interpreter's
        # exit would free TensorFlow's runtime under them (a crash, or a wait for them to end).
        # Nothing is left to save, so the process ends here.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
