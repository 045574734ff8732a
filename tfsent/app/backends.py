"""What the page's backend calls: a model server through ``SentimentClient``, or an export
in-process through ``SavedModelPredictor``. No web framework here.

Failures reach the page as a ``ModelError``: the HTTP status the page gets and one sentence for
a person (what is wrong, what to do), built from the client's ``ServingError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tfsent.client import Prediction, SentimentClient, ServingError

T = TypeVar("T")

# TF Serving serves no assets, so the label names come with a prediction: one of this text,
# once per served version.
PROBE_TEXT = "a"


@dataclass(frozen=True)
class ModelInfo:
    """What the page shows about the model; ``server`` is the address, or the export's folder."""

    model_name: str
    version: int | None
    labels: list[str]
    server: str
    protocol: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelError(Exception):
    """The model did not answer. ``status`` is the page's HTTP status, ``kind`` a keyword
    (``unreachable``, ``timeout``, ``unknown_model``, ``loading``, ``model_error``)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class ModelBackend(Protocol):
    address: str  # the server's address, or "in-process: <version folder>"

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...

    def info(self) -> ModelInfo: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def explain(
    err: ServingError, address: str, model_name: str, version: int | None, timeout: float
) -> ModelError:
    """A ``ServingError`` as a sentence for the person looking at the page."""
    detail = _short(err.message)
    if err.code == "UNAVAILABLE":
        if "connection refused" in detail.lower():  # gRPC wraps it in two lines of context
            detail = "connection refused"
        return ModelError(
            503,
            "unreachable",
            f"Cannot reach the model server at {address} ({detail}). Start it, or fix the "
            "app's --server; this page retries by itself every few seconds.",
        )
    if err.code == "DEADLINE_EXCEEDED":
        return ModelError(
            504,
            "timeout",
            f"The model server at {address} did not answer within {timeout:g} s; it may be "
            "overloaded. Try fewer reviews, or raise the app's --timeout.",
        )
    if err.code in ("NOT_FOUND", "HTTP 404"):
        what = f"version {version} of a model named '{model_name}'" if version is not None else (
            f"a model named '{model_name}'"
        )
        return ModelError(
            502,
            "unknown_model",
            f"The model server at {address} does not serve {what} ({detail}). Run the app "
            "with --model-name (and --version) as the server names its model.",
        )
    return ModelError(
        502, "model_error", f"The model server at {address} answered {err.code}: {detail}"
    )


class ServerBackend:
    """A model behind TF Serving (or ``python -m tfsent.serve``), over gRPC or REST.

    A call that fails to reach the server drops its client, so the next call dials afresh:
    a gRPC channel left in TRANSIENT_FAILURE waits out a backoff of up to two minutes before
    trying again, and the page must recover as soon as the server is back.
    """

    def __init__(
        self,
        address: str,
        *,
        model_name: str = "tfsent",
        version: int | None = None,
        timeout: float = 10.0,
        retries: int = 1,
    ) -> None:
        self.address = address
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.retries = retries
        self._lock = threading.Lock()
        self._labels: dict[int, list[str]] = {}
        # Built now so that a malformed address is a start-up error, not a page error.
        self._client: SentimentClient | None = self._new_client()
        self.protocol = self._client.protocol

    def _new_client(self) -> SentimentClient:
        return SentimentClient(
            self.address,
            model_name=self.model_name,
            version=self.version,
            timeout=self.timeout,
            retries=self.retries,
        )

    def _call(self, method: Callable[[SentimentClient], T]) -> T:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            client = self._client
        try:
            return method(client)
        except ServingError as err:
            if err.retryable or err.code == "DEADLINE_EXCEEDED":
                with self._lock:
                    if self._client is client:
                        # Not closed here: another request may still be using it; the garbage
                        # collector closes it once that one is done.
                        self._client = None
            raise explain(err, self.address, self.model_name, self.version, self.timeout) from None

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        return self._call(lambda client: client.predict(list(texts)))

    def info(self) -> ModelInfo:
        statuses = self._call(lambda client: client.status())
        available = sorted(s.version for s in statuses if s.state == "AVAILABLE")
        if not available:
            states = ", ".join(f"{s.version}: {s.state}" for s in statuses) or "none"
            raise ModelError(
                503,
                "loading",
                f"The model server at {self.address} has no version of '{self.model_name}' "
                f"ready yet (versions {states}); this page retries by itself.",
            )
        version = available[-1]
        if version not in self._labels:
            probe = self.predict([PROBE_TEXT])[0]
            self._labels[version] = list(probe.probabilities)
        return ModelInfo(self.model_name, version, self._labels[version], self.address,
                         self.protocol)

    def describe(self) -> str:
        return f"{self.address}, model '{self.model_name}'"

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class SavedModelBackend:
    """An exported SavedModel run in this process: no server, TensorFlow loaded here."""

    def __init__(self, path: str | Path, *, version: int | None = None) -> None:
        from tfsent.client import SavedModelPredictor

        self.predictor = SavedModelPredictor(path, version=version)
        self.version_dir = Path(self.predictor.version_dir)
        name = self.version_dir.name
        self.version = int(name) if name.isdigit() else None
        self.model_name = self.version_dir.parent.name if self.version is not None else name
        self.address = f"in-process: {self.version_dir}"
        self.labels = list(self.predict([PROBE_TEXT])[0].probabilities)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        try:
            return self.predictor.predict(list(texts))
        except ServingError as err:
            raise ModelError(
                500, "model_error", f"The model in {self.version_dir} failed: {_short(str(err))}"
            ) from None

    def info(self) -> ModelInfo:
        return ModelInfo(self.model_name, self.version, self.labels, self.address, "in-process")

    def describe(self) -> str:
        return f"in-process SavedModel {self.version_dir}"

    def close(self) -> None:
        pass
