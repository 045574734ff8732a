"""The server core: which model versions are loaded, as TF Serving's ServerCore +
AspiredVersionsManager. How requests run is :mod:`tfsent.model_server.service`'s job.

Each model's ``base_path`` is polled every ``file_system_poll_wait_seconds``; folders named with
ASCII digits are versions (``tfsent.versions``; anything else, such as an exporter's ``.tmp-*``
folder, is ignored). The model's version policy picks the versions to serve (default: the
newest). A new version loads in the background (``tf.saved_model.load``, then the ``warmup``
hook, which replays the warmup requests through the request path) while the old one keeps
serving; only once it is AVAILABLE does traffic move, and versions no longer wanted are then
unloaded after their in-flight requests finish.

A version that fails to load (say a copy still in progress) is retried, as TF Serving does,
``max_num_load_retries`` times, ``load_retry_interval_seconds`` apart; its status shows the last
error meanwhile. The versions already serving stay up throughout, and under the ``latest``
policy the newest version that did load keeps serving (or is loaded, e.g. after a restart)
while a newer one fails, so a broken export never causes an outage. A failed version is tried
afresh when its folder disappears and comes back, or when a config reload re-adds its model.

A request holds the version a ``ModelSpec`` names (a version, a label, or the newest) with
``servable(spec)``; a held version is not unloaded. Errors have TF Serving's codes and messages
(``Servable not found for request: Specific(tfsent, 7)``)::

    core = ServerCore(CoreOptions(file_system_poll_wait_seconds=1), warmup=replay_warmup)
    core.configure(single_model_config("tfsent", "exported/tfsent"), startup=True)
    core.load_initial()
    core.start()
    with core.servable(spec) as handle:
        handle.servable.run("serving_default", {"text": texts})
    core.status(spec)            # ModelVersionStatus protos
    core.stop(timeout=2)         # True once no thread runs a model any more
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from tfsent.errors import UserError, fail
from tfsent.model_server.batching import BatchScheduler
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.servable import Servable
from tfsent.model_server.server_config import (
    BatchingParameters,
    ModelConfigProto,
    aspired_versions,
    check_base_path,
    validate_model_server_config,
)
from tfsent.model_server.status import RequestError, clean_message, code_from_number
from tfsent.versions import scan_versions

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclass
class CoreOptions:
    file_system_poll_wait_seconds: float = 1.0
    saved_model_tags: tuple[str, ...] = ("serve",)
    batching: BatchingParameters | None = None
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    allow_reload_config_request: bool = False
    # Appended to the "Successfully loaded" log line, e.g. "(gRPC 127.0.0.1:8500, REST ...)".
    endpoints: str = ""


@dataclass(frozen=True)
class Handle:
    """A served version held for one request (it is not unloaded while held)."""

    model_name: str
    version: int
    servable: Servable
    batcher: BatchScheduler | None


# Called while a version is LOADING, with the handle it will serve through; returns the number
# of warmup requests it replayed. An exception fails the load.
WarmupHook = Callable[[Handle], int]


@dataclass
class _Version:
    version: int
    path: Path
    state: int = State.START
    error: RequestError | None = None
    servable: Servable | None = None
    batcher: BatchScheduler | None = None
    in_flight: int = 0
    failures: int = 0  # failed load attempts in a row
    retry_at: float = 0.0  # time.monotonic() of the next attempt after a failure

    def given_up(self, max_retries: int) -> bool:
        return self.error is not None and self.failures > max_retries


class _Model:
    def __init__(self, config: ModelConfigProto) -> None:
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.labels: dict[str, int] = {}
        self.removed = False
        self.warned_missing = False

    @property
    def name(self) -> str:
        return self.config.name

    def available(self) -> bool:
        return any(v.state == State.AVAILABLE for v in self.versions.values())


def _servable_id(name: str, version: int) -> str:
    return f"{{name: {name} version: {version}}}"


class ServerCore:
    """Loads, serves and unloads model versions; thread-safe."""

    def __init__(
        self,
        options: CoreOptions,
        metrics: ServingMetrics | None = None,
        warmup: WarmupHook | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics
        self._warmup = warmup
        self._models: dict[str, _Model] = {}
        self._lock = threading.Condition()  # guards all state; notified when requests finish
        self._wake = threading.Event()
        self._stopping = False
        self._poller: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------
    # Configuration

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
                elif model.removed or model.config.base_path != model_config.base_path:
                    # Re-added (or moved): failed versions get a fresh set of load attempts.
                    for version, entry in list(model.versions.items()):
                        if entry.error is not None and entry.state != State.AVAILABLE:
                            del model.versions[version]
                model.config = model_config
                model.removed = False
                model.labels = labels[name]
        if not startup:
            self._wake.set()

    def reload_config(self, config: Any) -> None:
        """HandleReloadConfigRequest: only when ``allow_reload_config_request`` (it replaces the
        served models and can point them at any folder the server can read)."""
        if not self.options.allow_reload_config_request:
            raise RequestError.permission_denied(
                "HandleReloadConfigRequest is disabled on this server; start it with "
                "--allow_reload_config_request=true to allow config reloads over gRPC"
            )
        try:
            config = validate_model_server_config(config, "ReloadConfigRequest")
        except UserError as err:
            raise RequestError.invalid_argument(str(err)) from None
        self.configure(config)
        log.info("Reloaded the model config from a ReloadConfigRequest")

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

    # ------------------------------------------------------------------------------------------
    # Lifecycle

    def load_initial(self) -> None:
        """Load every model's wanted versions now (retrying failures as configured);
        ``UserError`` if a model cannot be served."""
        for model in self._models.values():
            check_base_path(model.config)
        while True:
            self.poll_once()
            pending = [m for m in self._models.values() if not m.available()]
            retry_at = self._next_retry(pending)
            if not pending or retry_at is None or self._stopping:
                break
            log.info(
                "Waiting %.1fs to retry loading %s",
                retry_at - time.monotonic(),
                ", ".join(m.name for m in pending),
            )
            time.sleep(max(retry_at - time.monotonic(), 0))
        for model in self._models.values():
            if not model.available():
                errors = (
                    "; ".join(
                        f"version {v.version}: {v.error.message.splitlines()[0]}"
                        for v in model.versions.values()
                        if v.error is not None
                    )
                    or "no version loaded"
                )
                fail(f"model {model.name} did not become available ({errors})")

    def _next_retry(self, models: Sequence[_Model]) -> float | None:
        """When the earliest pending load retry of ``models`` is due (None: none pending)."""
        times = [
            entry.retry_at
            for model in models
            for entry in model.versions.values()
            if entry.error is not None
            and entry.state == State.END
            and not entry.given_up(self.options.max_num_load_retries)
        ]
        return min(times) if times else None

    def start(self) -> None:
        """Poll the base paths in the background (every ``file_system_poll_wait_seconds``)."""
        self._poller = threading.Thread(target=self._poll_forever, name="model-poller", daemon=True)
        self._poller.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop polling and unload every version after its in-flight requests, waiting at most
        ``timeout`` seconds for them. True when all is unloaded, so that no thread runs a model
        any more; False when a model run (a request's, a batch's, a load's warmup) outlasted
        ``timeout``: TensorFlow must then not be torn down under it."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        end = None if timeout is None else time.monotonic() + timeout
        idle = True
        if self._poller is not None:
            self._poller.join(None if end is None else max(end - time.monotonic(), 0.0))
            idle = not self._poller.is_alive()  # else a version is still loading
        for model in list(self._models.values()):
            for entry in list(model.versions.values()):
                if entry.state == State.AVAILABLE:
                    idle = self._unload(model, entry, end) and idle
        return idle

    def _poll_forever(self) -> None:
        poll = self.options.file_system_poll_wait_seconds
        while True:
            # A zero poll wait polls once at startup only, as TF Serving; load retries and
            # config reloads still wake us.
            waits = [poll] if poll > 0 else []
            retry_at = self._next_retry(list(self._models.values()))
            if retry_at is not None:
                waits.append(max(retry_at - time.monotonic(), 0.0))
            self._wake.wait(min(waits) if waits else None)
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

    def _wanted(self, model: _Model, on_disk: Mapping[int, Path]) -> set[int]:
        """The policy's versions, plus, under ``latest``, the newest ones that did load or may
        still, standing in for aspired versions that failed."""
        policy = model.config.model_version_policy
        wanted = aspired_versions(policy, on_disk)
        if policy.WhichOneof("policy_choice") in (None, "latest"):
            failed = {v for v, e in model.versions.items() if e.error is not None}
            good = [v for v in sorted(on_disk, reverse=True) if v not in failed]
            wanted |= set(good[: max(policy.latest.num_versions, 1)])
        return wanted

    def _sync(self, model: _Model) -> None:
        if model.removed:
            for entry in list(model.versions.values()):
                if entry.state == State.AVAILABLE:
                    self._unload(model, entry)
            return
        on_disk = self._scan(model)
        if on_disk is None:
            return
        tried: set[int] = set()
        while not self._stopping:  # again if a failure brought in an older stand-in
            wanted = self._wanted(model, on_disk)
            todo = [
                v for v in sorted(wanted, reverse=True) if v not in tried and self._due(model, v)
            ]
            if not todo:
                break
            for version in todo:
                tried.add(version)
                if self._stopping:
                    return
                self._load(model, version, on_disk[version])
        wanted = self._wanted(model, on_disk)
        wanted_available = any(
            e.state == State.AVAILABLE for v, e in model.versions.items() if v in wanted
        )
        for version, entry in list(model.versions.items()):
            # Availability preserving: the last serving version stays until a wanted one is up
            # (but goes, as in TF Serving, when no version at all is left on disk).
            if (
                entry.state == State.AVAILABLE
                and version not in wanted
                and (wanted_available or not wanted)
            ):
                self._unload(model, entry)

    def _scan(self, model: _Model) -> dict[int, Path] | None:
        """The model's versions on disk (None, warned once, while its base path is missing)."""
        base = Path(model.config.base_path)
        on_disk = scan_versions(base)
        if on_disk is None:
            if not model.warned_missing:
                log.warning("Could not find base path %s for servable %s", base, model.name)
                model.warned_missing = True
            return None
        model.warned_missing = False
        with self._lock:
            for version, entry in list(model.versions.items()):
                # A failed version whose folder went away is forgotten: if it comes back, it
                # is a new copy with a fresh set of attempts.
                if version not in on_disk and entry.error is not None and entry.servable is None:
                    del model.versions[version]
        return on_disk

    def _due(self, model: _Model, version: int) -> bool:
        """Whether ``version`` should be (re)loaded now."""
        entry = model.versions.get(version)
        if entry is None:
            return True
        if entry.state in (State.LOADING, State.AVAILABLE, State.UNLOADING):
            return False
        if entry.error is None:
            return True  # unloaded earlier, wanted again
        if entry.given_up(self.options.max_num_load_retries):
            return False
        return time.monotonic() >= entry.retry_at

    def _load(self, model: _Model, version: int, path: Path) -> None:
        with self._lock:
            entry = model.versions.get(version)
            if entry is None or entry.servable is not None:
                entry = model.versions[version] = _Version(version, path)
            entry.path = path
            entry.state = State.LOADING
        sid = _servable_id(model.name, version)
        retries = self.options.max_num_load_retries
        attempt = f" (retry {entry.failures} of {retries})" if entry.failures else ""
        log.info("Loading servable version %s from %s%s", sid, path, attempt)
        try:
            servable, batcher = self._load_and_warm_up(model.name, version, path)
        except Exception as err:  # any failure is this version's status, not the server's
            self._load_failed(model, entry, _load_error(err, model.config.base_path))
            return
        self._count_load(path, "success")
        with self._lock:
            entry.servable = servable
            entry.batcher = batcher
            entry.error = None
            entry.failures = 0
            entry.state = State.AVAILABLE
        log.info(
            "Successfully loaded servable version %s%s",
            sid,
            f" {self.options.endpoints}" if self.options.endpoints else "",
        )

    def _load_and_warm_up(
        self, name: str, version: int, path: Path
    ) -> tuple[Servable, BatchScheduler | None]:
        servable = Servable.load(path, name, version, self.options.saved_model_tags)
        batcher = None
        if self.options.batching is not None:
            observer = self.metrics.batch_observer(name) if self.metrics else None
            batcher = BatchScheduler(
                servable.run, self.options.batching, observer, name=f"{name}-{version}"
            )
        try:
            if self._warmup is not None:
                count = self._warmup(Handle(name, version, servable, batcher))
                if count:
                    log.info(
                        "Finished warmup of %s with %d request(s)",
                        _servable_id(name, version),
                        count,
                    )
        except BaseException:
            if batcher is not None:
                batcher.stop()
            raise
        return servable, batcher

    def _load_failed(self, model: _Model, entry: _Version, error: RequestError) -> None:
        retry = max(self.options.load_retry_interval_seconds, 0.0)
        with self._lock:
            entry.error = error
            entry.state = State.END
            entry.failures += 1
            entry.retry_at = time.monotonic() + retry
            left = self.options.max_num_load_retries - entry.failures + 1
        log.error(
            "Loading servable: %s failed: %s%s",
            _servable_id(model.name, entry.version),
            error.message,
            f"; retrying in {retry:g}s ({left} attempt(s) left)"
            if left > 0
            else "; giving up (it is tried again if its folder is replaced)",
        )
        self._count_load(entry.path, "fail")

    def _unload(self, model: _Model, entry: _Version, end: float | None = None) -> bool:
        """Unload once the version's requests (and batches) are done; False, leaving it loaded,
        if they still run at ``end`` (``time.monotonic()``)."""
        sid = _servable_id(model.name, entry.version)
        with self._lock:
            entry.state = State.UNLOADING
            while entry.in_flight:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    log.warning(
                        "Not unloading %s: %d request(s) still running", sid, entry.in_flight
                    )
                    return False
                self._lock.wait(left)
        log.info("Unloading servable version %s", sid)
        if entry.batcher is not None:
            left = None if end is None else max(end - time.monotonic(), 0.0)
            if not entry.batcher.stop(left):
                log.warning("Not unloading %s: a batch is still running", sid)
                return False
        with self._lock:
            entry.servable = None
            entry.batcher = None
            entry.state = State.END
        gc.collect()
        log.info("Done unloading servable version %s", sid)
        return True

    def _count_load(self, path: Path, status: str) -> None:
        if self.metrics is not None:
            self.metrics.load_attempt_count.labels(str(path), status).inc()

    # ------------------------------------------------------------------------------------------
    # Serving: the version a request names, and the status of versions

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
            if spec.WhichOneof("version_choice") is None:
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


def _load_error(err: Exception, base_path: str) -> RequestError:
    import tensorflow as tf

    if isinstance(err, RequestError):
        return RequestError(err.code, clean_message(err.message, [base_path]))
    if isinstance(err, tf.errors.OpError):
        code, message = code_from_number(err.error_code), err.message
    elif isinstance(err, FileNotFoundError):
        code, message = grpc.StatusCode.NOT_FOUND, str(err)
    else:
        code, message = grpc.StatusCode.UNKNOWN, str(err) or type(err).__name__
    return RequestError(code, clean_message(message, [base_path]))
