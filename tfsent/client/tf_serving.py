"""A client for the exported sentiment model behind TensorFlow Serving, over gRPC or REST.

It speaks TF Serving's own protocols (the PredictionService / ModelService gRPC API over
``grpcio``, with messages generated from TF Serving's ``.proto`` sources, and the
``/v1/models/...`` REST API over ``httpx``), so it works the same against a real
``tensorflow_model_server`` and against ``python -m tfsent.serve``, and it needs no TensorFlow::

    from tfsent.client import SentimentClient

    with SentimentClient("grpc://localhost:8500", model_name="tfsent") as client:
        for p in client.predict(["great film", "dull"]):
            print(p.label, round(p.confidence, 2), p.probabilities)
        print(client.status(), client.metadata().version)

The address picks the transport: ``grpc://host:8500`` (``grpcs://`` for TLS) or a bare
``host:8500`` for gRPC, ``http://host:8501`` or ``https://...`` for REST. Only the chosen
transport's library is imported.

Label names: TF Serving exposes no assets over the wire, so the export returns them itself: its
``classes`` output holds, on every row, the label names in class-id order (like the Classify
API's ``classes`` next to ``scores``), and ``probabilities`` is keyed by them. Names given as
``label_names`` win over the served ones (and over gRPC the client then does not ask for
``classes``). ``Prediction.label`` always comes from the server.

A request for something the server does not have raises a ``ServingError`` that says what:
its ``argument`` is ``"model_name"``, ``"version"``, ``"version_label"`` or
``"signature_name"``, and ``available`` lists the versions or signatures the server has.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from tfsent.client.predictions import (
    DEFAULT_MODEL_NAME,
    DEFAULT_SIGNATURE,
    GRPC_PORT,
    ModelMetadata,
    Prediction,
    ServingError,
    VersionStatus,
    predictions_from_outputs,
)
from tfsent.client.transport import ModelSpec, TlsFiles, Transport
from tfsent.errors import fail

if TYPE_CHECKING:
    import httpx

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REST_FORMATS = ("instances", "inputs")
# How a server turns down a request for something it does not have (the model, a version).
NOT_FOUND_CODES = ("NOT_FOUND", "HTTP 404")

T = TypeVar("T")


class SentimentClient:
    """Predict sentiment with the ``tfsent`` model served by TF Serving (see module docstring).

    ``version`` or ``version_label`` pins a version (default: the server's latest); ``timeout``
    is per request in seconds; UNAVAILABLE / HTTP 503 / connection failures are retried
    ``retries`` times with exponential backoff starting at ``backoff`` seconds, nothing else is;
    ``root_certificates`` is a PEM file for TLS (system roots when ``None``), ``client_cert``
    and ``client_key`` PEM files for mutual TLS; ``headers`` go out as HTTP headers or gRPC
    metadata (e.g. ``{"Authorization": "Bearer ..."}``); texts are sent ``chunk_size`` at a
    time; ``rest_format`` is ``"instances"`` (row) or ``"inputs"`` (columnar) REST requests;
    ``label_names`` (class-id order) key ``Prediction.probabilities`` instead of the served
    ``classes``; ``http_transport`` replaces httpx's network transport (tests, proxies).

    Bad arguments raise ``tfsent.errors.UserError``; failures of the server or of the way to it
    raise ``ServingError``. Creating a client connects to nothing: the first call does.

    >>> client = SentimentClient("http://localhost:8501", version_label="stable")
    >>> client.protocol, client.version_label
    ('rest', 'stable')
    >>> client.close()
    """

    def __init__(
        self,
        address: str = f"grpc://localhost:{GRPC_PORT}",
        *,
        model_name: str = DEFAULT_MODEL_NAME,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.1,
        root_certificates: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        headers: Mapping[str, str] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        chunk_size: int = 64,
        label_names: Sequence[str] | None = None,
        rest_format: str = "instances",
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        if version is not None and version_label is not None:
            fail("give a model version or a version label, not both")
        if chunk_size < 1:
            fail(f"chunk_size must be at least 1, got {chunk_size}")
        if retries < 0:
            fail(f"retries must be 0 or more, got {retries}")
        if timeout <= 0:
            fail(f"timeout must be more than 0 seconds, got {timeout}")
        if rest_format not in REST_FORMATS:
            fail(f"rest_format must be 'instances' or 'inputs', got {rest_format!r}")
        if label_names is not None and (isinstance(label_names, str) or not label_names):
            fail(f"label_names must be a list of class names, got {label_names!r}")
        if client_key and not client_cert:
            fail("client_key needs client_cert (the PEM certificate of that key)")
        self.address = address
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.signature_name = signature_name
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.chunk_size = chunk_size
        self.label_names = list(label_names) if label_names is not None else None
        scheme, target = _split_address(address)
        self.protocol = "grpc" if scheme in ("grpc", "grpcs") else "rest"
        self._model = ModelSpec(model_name, signature_name, version, version_label)
        tls = None
        if scheme in ("grpcs", "https"):
            tls = TlsFiles(root_certificates, client_cert, client_key)
        self._transport: Transport
        # Each transport is imported here, not at the top, so that only the chosen one's
        # library loads (grpcio and protobuf, or httpx): a REST call imports no gRPC at all.
        try:
            if self.protocol == "grpc":
                from tfsent.client.grpc_transport import GrpcTransport

                self._transport = GrpcTransport(
                    target, self._model, timeout=timeout, tls=tls, headers=headers,
                    max_message_bytes=max_message_bytes, label_names=self.label_names,
                )
            else:
                from tfsent.client.rest_transport import RestTransport

                self._transport = RestTransport(
                    target, self._model, timeout=timeout, tls=tls, headers=headers,
                    rest_format=rest_format, transport=http_transport,
                )
        except FileNotFoundError as err:
            fail(f"no such file: {err.filename}; give an existing PEM file")
        except OSError as err:  # ssl.SSLError included
            fail(f"cannot use the TLS files: {err}; give PEM certificate and key files")

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One ``Prediction`` per text, in order; long lists go out in chunks of ``chunk_size``."""
        if isinstance(texts, (str, bytes)):
            fail("predict() takes a list of texts, not one string; write predict([text])")
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            bad = next(t for t in texts if not isinstance(t, str))
            fail(f"predict() takes texts (str), got a {type(bad).__name__}: {bad!r:.60}")
        predictions: list[Prediction] = []
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            outputs = self._call(lambda c=chunk: self._transport.predict(c))
            predictions += predictions_from_outputs(outputs, len(chunk), self.label_names)
        return predictions

    def status(self) -> list[VersionStatus]:
        """The served versions of the model (the pinned one if a version or label is set)."""
        return self._call(self._transport.status)

    def metadata(self) -> ModelMetadata:
        """Model name, version and signature definitions as the server reports them."""
        return self._call(self._transport.metadata)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call: Callable[[], T]) -> T:
        # One loop for both transports keeps the policy identical: gRPC's own retryPolicy
        # caps attempts at 5 and httpx retries only connection errors, never a 503.
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ServingError as err:
                if not err.retryable:
                    raise self._explain(err) from None
                if attempt == self.retries:
                    raise
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _explain(self, err: ServingError) -> ServingError:
        """``err``, or when the request named something the server does not have (the model,
        the version or label, the signature), an error saying which and what it has instead.

        TF Serving's errors say "Servable not found for request: Latest(x)" whether the model
        or the version is missing, and it lists no models: asking it for the model's status
        (and, for a signature, its metadata) tells them apart. Only failed requests pay.
        """
        spec = self._model
        label = spec.version_label
        signature = f'"{spec.signature_name}"'  # as TF Serving quotes it in its errors
        missing = err.code in NOT_FOUND_CODES
        if not (missing or (label and label in err.message) or signature in err.message):
            return err
        try:
            versions = self._transport.status(spec.unpinned())
        except ServingError as probe:
            if probe.code not in NOT_FOUND_CODES:
                return err
            return ServingError(
                err.code, f"model {spec.name!r} not found on the server ({err.message})",
                argument="model_name",
            )
        available = [str(v.version) for v in versions if v.state == "AVAILABLE"]
        if spec.version is not None and str(spec.version) not in available:
            return ServingError(
                err.code, f"version {spec.version} of model {spec.name!r} is not available on "
                f"the server ({err.message})", argument="version", available=available,
            )
        if label is not None and label in err.message:
            return ServingError(
                err.code, f"version label {label!r} of model {spec.name!r} not found on the "
                f"server ({err.message})", argument="version_label",
            )
        if signature not in err.message:
            return err
        try:
            defined = self._transport.metadata().signature_defs
        except ServingError:
            return err
        # Not callable: SavedModel's own entries, such as __saved_model_init_op.
        signatures = sorted(name for name in defined if not name.startswith("__"))
        if spec.signature_name in signatures:
            return err
        return ServingError(
            err.code, f"model {spec.name!r} has no signature {spec.signature_name!r} "
            f"({err.message})", argument="signature_name", available=signatures,
        )


def _split_address(address: str) -> tuple[str, str]:
    """``(scheme, target)``: a gRPC ``host:port`` target, or the REST base URL.

    >>> _split_address("localhost"), _split_address("https://gw.test/tfs/")
    (('grpc', 'localhost:8500'), ('https', 'https://gw.test/tfs'))
    """
    if "://" not in address:
        address = f"grpc://{address}"
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    try:
        parts.port  # noqa: B018  (raises on a port that is no number)
    except ValueError:
        scheme = ""
    if scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname:
        fail(
            f"cannot use server address {address!r}; "
            "write grpc://host:8500, grpcs://host:port, http://host:8501 or https://host:port"
        )
    if scheme in ("http", "https"):
        return scheme, address.rstrip("/")
    return scheme, parts.netloc if parts.port else f"{parts.netloc}:{GRPC_PORT}"
