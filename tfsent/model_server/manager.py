"""Which versions of which models are served: TF Serving's ServerCore + AspiredVersionsManager.

Each model's ``base_path`` is polled every ``file_system_poll_wait_seconds``; integer-named
folders are versions (anything else, such as an exporter's ``.tmp-*`` folder, is ignored). The
model's version policy picks the versions to serve (default: the newest). A new version loads in
the background (``tf.saved_model.load``, then the warmup requests) while the old one keeps
serving; only once it is AVAILABLE does traffic move, and versions no longer wanted are then
unloaded after their in-flight requests finish. A version that fails to load is reported (state
END with its error) and the versions already serving stay up.

Requests name a model and optionally a version or a version label (``ModelSpec``); errors have
TF Serving's codes and messages (``Servable not found for request: Specific(tfsent, 7)``)::

    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=1))
    manager.configure(single_model_config("tfsent", "exported/tfsent"), startup=True)
    manager.load_initial()
    manager.start()
    outputs, version = manager.predict(spec, {"text": texts})
    manager.stop()
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_status_pb2

from tfsent.errors import fail
from tfsent.model_server.batching import BatchScheduler
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.servable import DEFAULT_SIGNATURE, Servable, select_outputs
from tfsent.model_server.server_config import (
    BatchingParameters,
    aspired_versions,
    check_base_path,
    scan_versions,
)
from tfsent.model_server.status import RequestError, code_from_number

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class ManagerOptions:
    file_system_poll_wait_seconds: float = 1.0
    saved_model_tags: tuple[str, ...] = ("serve",)
    enable_model_warmup: bool = True
    warmup_iterations: int = 1
    batching: BatchingParameters | None = None
    allow_version_labels_for_unavailable_models: bool = False
    # Appended to the "Successfully loaded" log line, e.g. "(gRPC 0.0.0.0:8500, REST ...)".
    endpoints: str = ""


@dataclass
class _Version:
    version: int
    path: Path
    state: int = State.START
    error: RequestError | None = None
    servable: Servable | None = None
    batcher: BatchScheduler | None = None
    in_flight: int = 0


class _Model:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.labels: dict[str, int] = {}
        self.failed: set[int] = set()  # not retried until the folder goes away and comes back
        self.removed = False
        self.warned_missing = False

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Handle:
    """A served version held for one request (it is not unloaded while held)."""

    model_name: str
    version: int
    servable: Servable
    batcher: BatchScheduler | None


def _servable_id(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


class ModelManager:
    """Loads, serves and unloads model versions; thread-safe (see module docstring)."""

    def __init__(self, options: ManagerOptions, metrics: ServingMetrics | None = None) -> None:
        self.options = options
        self.metrics = metrics
        self._models: dict[str, _Model] = {}
        self._lock = threading.Condition()  # guards all state; notified when requests finish
        self._wake = threading.Event()
        self._stopping = False
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------
    # Configuration and lifecycle

    def configure(self, config: Any, startup: bool = False) -> None:
        """Apply a ``ModelServerConfig``: models added/removed, policies and version labels.

        Labels are checked first, like TF Serving's ``UpdateModelVersionLabelMap``: one on a
        version that is not AVAILABLE is refused (FAILED_PRECONDITION) unless
        ``allow_version_labels_for_unavailable_models``, and the config is then not applied.
        """
        wanted = {m.name: m for m in config.model_config_list.config}
        with self._lock:
            labels = {name: self._checked_labels(m) for name, m in wanted.items()}
            for name, model in self._models.items():
                model.removed = name not in wanted
            for name, model_config in wanted.items():
                model = self._models.get(name)
                if model is None:
                    model = self._models[name] = _Model(model_config)
                model.config = model_config
                model.removed = False
                model.labels = labels[name]
        if not startup:
            self._wake.set()

    def _checked_labels(self, model_config: Any) -> dict[str, int]:
        model = self._models.get(model_config.name)
        labels: dict[str, int] = {}
        for label, version in model_config.version_labels.items():
            allowed = self.options.allow_version_labels_for_unavailable_models and (
                model is None or model.labels.get(label, version) == version
            )
            entry = model.versions.get(version) if model is not None else None
            if not allowed and (entry is None or entry.state != State.AVAILABLE):
                raise RequestError.failed_precondition(
                    f"Request to assign label to version {version} of model "
                    f"{model_config.name}, which is not currently available for inference"
                )
            labels[label] = version
        return labels

    def load_initial(self) -> None:
        """Load every model's wanted versions now; ``UserError`` if a model cannot be served."""
        for model in self._models.values():
            check_base_path(model.config)
        self.poll_once()
        for model in self._models.values():
            if not any(v.state == State.AVAILABLE for v in model.versions.values()):
                errors = (
                    "; ".join(
                        f"version {v.version}: {v.error.message.splitlines()[0]}"
                        for v in model.versions.values()
                        if v.error is not None
                    )
                    or "no version loaded"
                )
                fail(f"model {model.name} did not become available ({errors})")

    def start(self) -> None:
        """Poll the base paths in the background (every ``file_system_poll_wait_seconds``)."""
        self._poller = threading.Thread(target=self._poll_forever, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stop polling and unload every version (after its in-flight requests)."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._poller is not None:
            self._poller.join()
        for model in list(self._models.values()):
            for entry in list(model.versions.values()):
                if entry.state == State.AVAILABLE:
                    self._unload(model, entry)

    def _poll_forever(self) -> None:
        wait = self.options.file_system_poll_wait_seconds
        while True:
            # A zero wait polls once at startup only, as TF Serving; config reloads still wake us.
            self._wake.wait(wait if wait > 0 else None)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded whatever one poll hit
                log.exception("polling the model base paths failed")

    def poll_once(self) -> None:
        """One pass over every model: load newly wanted versions, unload unwanted ones."""
        for model in list(self._models.values()):
            if self._stopping:
                return
            self._sync(model)

    def _sync(self, model: _Model) -> None:
        if model.removed:
            for entry in list(model.versions.values()):
                if entry.state == State.AVAILABLE:
                    self._unload(model, entry)
            return
        base = Path(model.config.base_path)
        on_disk = scan_versions(base)
        if on_disk is None:
            if not model.warned_missing:
                log.warning("Could not find base path %s for servable %s", base, model.name)
                model.warned_missing = True
            return
        model.warned_missing = False
        if not on_disk:
            log.debug("No versions of servable %s found under base path %s", model.name, base)
        aspired = aspired_versions(model.config.model_version_policy, on_disk)
        model.failed &= set(on_disk)
        for version in sorted(aspired):
            entry = model.versions.get(version)
            if version in model.failed or (
                entry is not None and entry.state in (State.LOADING, State.AVAILABLE)
            ):
                continue
            if self._stopping:
                return
            self._load(model, version, on_disk[version])
        aspired_available = any(
            e.state == State.AVAILABLE for v, e in model.versions.items() if v in aspired
        )
        for version, entry in list(model.versions.items()):
            # Availability preserving: the last serving version stays until a wanted one is up.
            if (
                entry.state == State.AVAILABLE
                and version not in aspired
                and (aspired_available or not aspired)
            ):
                self._unload(model, entry)

    def _load(self, model: _Model, version: int, path: Path) -> None:
        entry = _Version(version, path)
        with self._lock:
            model.versions[version] = entry
            entry.state = State.LOADING
        sid = _servable_id(model.name, version)
        log.info("Loading servable version %s from %s", sid, path)
        try:
            servable = Servable.load(path, model.name, version, self.options.saved_model_tags)
            if self.options.enable_model_warmup:
                count = servable.warmup(self.options.warmup_iterations)
                if count:
                    log.info("Finished warmup of %s with %d request(s)", sid, count)
            batcher = None
            if self.options.batching is not None:
                observer = self.metrics.batch_observer(model.name) if self.metrics else None
                batcher = BatchScheduler(
                    servable.run, self.options.batching, observer, name=f"{model.name}-{version}"
                )
        except Exception as err:  # any failure is this version's status, not the server's
            error = _load_error(err)
            log.error("Loading servable: %s failed: %s", sid, error.message)
            self._count_load(path, "fail")
            with self._lock:
                entry.error = error
                entry.state = State.END
                model.failed.add(version)
            return
        self._count_load(path, "success")
        with self._lock:
            entry.servable = servable
            entry.batcher = batcher
            entry.state = State.AVAILABLE
        log.info(
            "Successfully loaded servable version %s%s",
            sid,
            f" {self.options.endpoints}" if self.options.endpoints else "",
        )

    def _unload(self, model: _Model, entry: _Version) -> None:
        sid = _servable_id(model.name, entry.version)
        with self._lock:
            entry.state = State.UNLOADING
            while entry.in_flight:
                self._lock.wait()
        log.info("Unloading servable version %s", sid)
        if entry.batcher is not None:
            entry.batcher.stop()
        with self._lock:
            entry.servable = None
            entry.batcher = None
            entry.state = State.END
        gc.collect()
        log.info("Done unloading servable version %s", sid)

    def _count_load(self, path: Path, status: str) -> None:
        if self.metrics is not None:
            self.metrics.load_attempt_count.labels(str(path), status).inc()

    # ------------------------------------------------------------------------------------------
    # Requests

    @contextmanager
    def servable(self, spec: Any) -> Iterator[Handle]:
        """The version a ModelSpec asks for, held until the ``with`` block ends."""
        entry = self._acquire(spec)
        try:
            assert entry.servable is not None
            yield Handle(spec.name, entry.version, entry.servable, entry.batcher)
        finally:
            with self._lock:
                entry.in_flight -= 1
                self._lock.notify_all()

    def _acquire(self, spec: Any) -> _Version:
        if not spec.name:
            raise RequestError.invalid_argument("ModelSpec has no name specified.")
        with self._lock:
            model = self._models.get(spec.name)
            if model is not None and model.removed:
                model = None
            choice = spec.WhichOneof("version_choice")
            if choice is None:
                request = f"Latest({spec.name})"
                available = (
                    []
                    if model is None
                    else [v for v, e in model.versions.items() if e.state == State.AVAILABLE]
                )
                version = max(available) if available else None
            else:
                version = self._version_of(model, spec)
                request = f"Specific({spec.name}, {version})"
            entry = None
            if model is not None and version is not None:
                entry = model.versions.get(version)
            if entry is None or entry.state != State.AVAILABLE:
                raise RequestError.not_found(f"Servable not found for request: {request}")
            entry.in_flight += 1
            return entry

    @staticmethod
    def _version_of(model: _Model | None, spec: Any) -> int:
        if spec.WhichOneof("version_choice") == "version":
            return spec.version.value
        label = spec.version_label
        if model is None or label not in model.labels:
            raise RequestError.invalid_argument(f"Unrecognized servable version label: {label}")
        return model.labels[label]

    def predict(
        self, spec: Any, inputs: Mapping[str, np.ndarray], output_filter: Sequence[str] = ()
    ) -> tuple[dict[str, np.ndarray], int]:
        """Run a Predict request; the outputs (filtered) and the version that served it."""
        with self.servable(spec) as handle:
            return self.run(handle, spec.signature_name, inputs, output_filter), handle.version

    @staticmethod
    def run(
        handle: Handle,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Check and run a request on a held version, through its batch queue if batching."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        handle.servable.check_request(signature_name, inputs, output_filter)
        if handle.batcher is not None:
            outputs = handle.batcher.submit(signature_name, inputs).result()
        else:
            outputs = handle.servable.run(signature_name, inputs)
        return select_outputs(outputs, output_filter)

    def signature_defs(self, spec: Any) -> tuple[int, dict[str, Any]]:
        """The served version and its SignatureDefs (GetModelMetadata's ``signature_def``)."""
        with self.servable(spec) as handle:
            return handle.version, dict(handle.servable.signature_defs)

    def status(self, spec: Any) -> list[Any]:
        """GetModelStatus: ``ModelVersionStatus`` protos, newest version first."""
        if not spec.name:
            raise RequestError.invalid_argument("Missing model name in request.")
        with self._lock:
            model = self._models.get(spec.name)
            if spec.WhichOneof("version_choice") is not None:
                version = self._version_of(model, spec)
                entry = model.versions.get(version) if model is not None else None
                if entry is None:
                    raise RequestError.not_found(
                        f"Could not find version {version} of model {spec.name}"
                    )
                entries = [entry]
            else:
                entries = (
                    []
                    if model is None
                    else [model.versions[v] for v in sorted(model.versions, reverse=True)]
                )
                if not entries:
                    raise RequestError.not_found(
                        f"Could not find any versions of model {spec.name}"
                    )
            return [_status_proto(e) for e in entries]


def _status_proto(entry: _Version) -> Any:
    status = get_model_status_pb2.ModelVersionStatus(version=entry.version, state=entry.state)
    status.status.SetInParent()  # TF Serving always reports a status, OK included
    if entry.error is not None:
        status.status.error_code = entry.error.code.value[0]
        status.status.error_message = entry.error.message
    return status


def _load_error(err: Exception) -> RequestError:
    import tensorflow as tf

    if isinstance(err, RequestError):
        return err
    if isinstance(err, tf.errors.OpError):
        return RequestError(code_from_number(err.error_code), err.message)
    if isinstance(err, FileNotFoundError):
        return RequestError(grpc.StatusCode.NOT_FOUND, str(err))
    return RequestError(grpc.StatusCode.UNKNOWN, str(err) or type(err).__name__)
