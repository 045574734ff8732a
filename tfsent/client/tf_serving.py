"""A client for the exported sentiment model behind TensorFlow Serving, over gRPC or REST.

It speaks TF Serving's own protocols (the ``tensorflow-serving-api`` protos and stubs over
``grpcio``, and the ``/v1/models/...`` REST API over ``httpx``), so it works the same against a
real ``tensorflow_model_server`` and against ``python -m tfsent.serve``::

    from tfsent.client import SentimentClient

    with SentimentClient("grpc://localhost:8500", model_name="tfsent") as client:
        for p in client.predict(["great film", "dull"]):
            print(p.label, round(p.confidence, 2), p.probabilities)
        print(client.status(), client.metadata().version)

The address picks the transport: ``grpc://host:8500`` (``grpcs://`` for TLS) or a bare
``host:8500`` for gRPC, ``http://host:8501`` or ``https://...`` for REST.

Label names: TF Serving exposes no assets over the wire, so the export returns them itself: its
``classes`` output holds, on every row, the label names in class-id order (like the Classify
API's ``classes`` next to ``scores``), and ``probabilities`` is keyed by them. Names given as
``label_names`` win over the served ones; exports from before ``classes`` get the class ids
``"0"``, ``"1"``, ... unless ``label_names`` is given (over gRPC the client then stops asking
for ``classes``). ``Prediction.label`` always comes from the server.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
import httpx
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

DEFAULT_MODEL_NAME = "tfsent"
DEFAULT_SIGNATURE = "serving_default"
GRPC_PORT = 8500
REST_PORT = 8501
TEXT_INPUT = "text"
CLASSES_OUTPUT = "classes"
# ``logits`` is left out over gRPC: nobody reads it here and it doubles the reply.
OUTPUTS = ("probabilities", "label_id", "label", CLASSES_OUTPUT)
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

T = TypeVar("T")


class ServingError(Exception):
    """The server (or the way to it) failed: gRPC status name or ``HTTP <status>``, and its message.

    ``retryable`` is true for failures worth retrying: gRPC UNAVAILABLE, HTTP 503, no connection.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    label_id: int


@dataclass(frozen=True)
class VersionStatus:
    """One version of the model as the server sees it (``state`` is e.g. ``AVAILABLE``)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    version: int
    signature_defs: dict[str, meta_graph_pb2.SignatureDef] = field(repr=False)


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
    ``classes``.
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
            raise ValueError("give a model version or a version label, not both")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        if rest_format not in ("instances", "inputs"):
            raise ValueError(f"rest_format must be 'instances' or 'inputs', got {rest_format!r}")
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
        tls = _TlsFiles(root_certificates, client_cert, client_key)
        self._transport: _GrpcTransport | _RestTransport
        if scheme in ("grpc", "grpcs"):
            self._transport = _GrpcTransport(
                self, target, tls if scheme == "grpcs" else None, headers, max_message_bytes
            )
        else:
            self._transport = _RestTransport(
                self, target, tls, headers, rest_format, http_transport
            )

    @property
    def protocol(self) -> str:
        """``"grpc"`` or ``"rest"``."""
        return "grpc" if isinstance(self._transport, _GrpcTransport) else "rest"

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One ``Prediction`` per text, in order; long lists go out in chunks of ``chunk_size``."""
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of texts, not one string")
        texts = list(texts)
        predictions: list[Prediction] = []
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start : start + self.chunk_size]
            outputs = self._with_retries(lambda c=chunk: self._transport.predict(c))
            predictions += predictions_from_outputs(outputs, len(chunk), self.label_names)
        return predictions

    def status(self) -> list[VersionStatus]:
        """The served versions of the model (the pinned one if a version or label is set)."""
        return self._with_retries(self._transport.status)

    def metadata(self) -> ModelMetadata:
        """Model name, version and signature definitions as the server reports them."""
        return self._with_retries(self._transport.metadata)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> SentimentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _with_retries(self, call: Callable[[], T]) -> T:
        # One loop for both transports keeps the policy identical: gRPC's own retryPolicy
        # caps attempts at 5 and httpx retries only connection errors, never a 503.
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ServingError as err:
                if not err.retryable or attempt == self.retries:
                    raise
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")


def predictions_from_outputs(
    outputs: Mapping[str, Any], count: int, label_names: Sequence[str] | None = None
) -> list[Prediction]:
    """Turn a signature's ``probabilities`` / ``label_id`` / ``label`` / ``classes`` outputs into
    Predictions.

    ``probabilities`` is keyed by ``label_names`` when given, else by the first row of
    ``classes``, else (exports without ``classes``) by the class ids ``"0"``, ``"1"``, ....
    Shared by the client and ``tfsent.predict --saved-model`` so both answer alike.
    """
    if "probabilities" not in outputs:
        raise ServingError(
            "INVALID_RESPONSE",
            f"the reply has no 'probabilities' output (got {sorted(outputs)}); "
            "serve a model exported by tfsent.export",
        )
    probs = np.asarray(outputs["probabilities"], dtype=np.float64).reshape(count, -1)
    if "label_id" in outputs:
        ids = np.asarray(outputs["label_id"], dtype=np.int64).reshape(count)
    else:
        ids = probs.argmax(axis=1)
    num_labels = probs.shape[1]
    if label_names is not None and len(label_names) != num_labels:
        raise ServingError(
            "INVALID_RESPONSE",
            f"the model has {num_labels} classes but {len(label_names)} label names were given",
        )
    if label_names is not None:
        keys = list(label_names)
    elif outputs.get(CLASSES_OUTPUT) is not None and count:
        keys = [_text(name) for name in np.asarray(outputs[CLASSES_OUTPUT]).reshape(count, -1)[0]]
        if len(keys) != num_labels:
            raise ServingError(
                "INVALID_RESPONSE",
                f"the model has {num_labels} classes but its 'classes' output names {len(keys)}",
            )
    else:
        keys = [str(i) for i in range(num_labels)]
    served_labels = outputs.get("label")
    served = list(np.asarray(served_labels).reshape(count)) if served_labels is not None else None
    result = []
    for row, (p, label_id) in enumerate(zip(probs, ids, strict=True)):
        if served is not None:
            label = _text(served[row])
        else:
            label = keys[label_id]
        result.append(
            Prediction(
                label=label,
                confidence=float(p[label_id]),
                probabilities={k: float(v) for k, v in zip(keys, p, strict=True)},
                label_id=int(label_id),
            )
        )
    return result


def _text(value: Any) -> str:
    """A string output's value: bytes over gRPC and in-process, ``str`` over REST."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _TlsFiles:
    root_certificates: str | Path | None
    client_cert: str | Path | None
    client_key: str | Path | None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.root_certificates) if self.root_certificates else None
        )
        if self.client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.root_certificates),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_cert),
        )


def _split_address(address: str) -> tuple[str, str]:
    """``(scheme, target)``: a gRPC ``host:port`` target, or the REST base URL."""
    if "://" not in address:
        address = f"grpc://{address}"
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    if scheme not in ("grpc", "grpcs", "http", "https") or not parts.hostname:
        raise ValueError(
            f"cannot use server address {address!r}; "
            "write grpc://host:8500, grpcs://host:port, http://host:8501 or https://host:port"
        )
    if scheme in ("http", "https"):
        return scheme, address.rstrip("/")
    return scheme, parts.netloc if parts.port else f"{parts.netloc}:{GRPC_PORT}"


class _GrpcTransport:
    """PredictionService / ModelService stubs on one channel, as in TF Serving's
    ``example/resnet_client_grpc.py``."""

    def __init__(
        self,
        client: SentimentClient,
        target: str,
        tls: _TlsFiles | None,
        headers: Mapping[str, str] | None,
        max_message_bytes: int,
    ) -> None:
        self.client = client
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            self.channel = grpc.secure_channel(target, tls.grpc_credentials(), options=options)
        # gRPC metadata keys must be lowercase.
        self.call_metadata = [(k.lower(), v) for k, v in (headers or {}).items()]
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.outputs = OUTPUTS

    def _model_spec(self, spec: Any, signature: bool = True) -> None:
        c = self.client
        spec.name = c.model_name
        if signature:
            spec.signature_name = c.signature_name
        if c.version is not None:
            spec.version.value = c.version
        elif c.version_label is not None:
            spec.version_label = c.version_label

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.client.timeout, metadata=self.call_metadata)
        except grpc.RpcError as err:
            code = err.code()
            raise ServingError(
                code.name, err.details() or "", retryable=code == grpc.StatusCode.UNAVAILABLE
            ) from None

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec)
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
        request.output_filter.extend(self.outputs)
        try:
            response = self._call(self.predictions.Predict, request)
        except ServingError as err:
            if not _lacks_output(err, CLASSES_OUTPUT) or CLASSES_OUTPUT not in self.outputs:
                raise
            # An export from before ``classes``: TF Serving refuses to filter on an unknown
            # output, so ask again without it, and from now on (one extra call per client).
            self.outputs = tuple(name for name in self.outputs if name != CLASSES_OUTPUT)
            del request.output_filter[:]
            request.output_filter.extend(self.outputs)
            response = self._call(self.predictions.Predict, request)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def status(self) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, signature=False)
        response = self._call(self.models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(
                version=s.version,
                state=state_name(s.state),
                error_code=status_code_name(s.status.error_code),
                error_message=s.status.error_message,
            )
            for s in response.model_version_status
        ]

    def metadata(self) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, signature=False)
        request.metadata_field.append("signature_def")
        response = self._call(self.predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return ModelMetadata(
            name=response.model_spec.name,
            version=response.model_spec.version.value,
            signature_defs=dict(signatures.signature_def),
        )

    def close(self) -> None:
        self.channel.close()


def _lacks_output(err: ServingError, name: str) -> bool:
    """Whether ``err`` is TF Serving refusing an ``output_filter`` naming ``name``."""
    return err.code == "INVALID_ARGUMENT" and (
        f"output tensor alias not found in signature: {name} " in f"{err.message} "
    )


class _RestTransport:
    """TF Serving's REST API: ``/v1/models/{name}[/versions/{v}|/labels/{l}]`` followed by
    ``:predict`` or ``/metadata``."""

    def __init__(
        self,
        client: SentimentClient,
        base_url: str,
        tls: _TlsFiles,
        headers: Mapping[str, str] | None,
        rest_format: str,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self.client = client
        self.rest_format = rest_format
        verify: ssl.SSLContext | bool = True
        if base_url.lower().startswith("https://"):
            verify = tls.ssl_context()
        self.http = httpx.Client(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=client.timeout,
            verify=verify,
            transport=transport,
        )

    def _model_path(self) -> str:
        c = self.client
        path = f"/v1/models/{c.model_name}"
        if c.version is not None:
            path += f"/versions/{c.version}"
        elif c.version_label is not None:
            path += f"/labels/{c.version_label}"
        return path

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TimeoutException as err:
            raise ServingError("DEADLINE_EXCEEDED", f"no answer from {err.request.url}") from None
        except httpx.TransportError as err:
            raise ServingError(
                "UNAVAILABLE", str(err) or type(err).__name__, retryable=True
            ) from None
        if response.status_code != 200:
            raise ServingError(
                f"HTTP {response.status_code}",
                _rest_error_message(response),
                retryable=response.status_code == 503,
            )
        try:
            return response.json()
        except ValueError:
            raise ServingError("INVALID_RESPONSE", "the server's reply is not JSON") from None

    def predict(self, texts: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"signature_name": self.client.signature_name}
        if self.rest_format == "instances":
            body["instances"] = [{TEXT_INPUT: t} for t in texts]
            rows = self._request("POST", self._model_path() + ":predict", body).get("predictions")
            if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
                raise ServingError("INVALID_RESPONSE", f"unexpected predictions: {rows!r:.200}")
            return {name: [row[name] for row in rows] for name in rows[0]}
        body["inputs"] = {TEXT_INPUT: texts}
        outputs = self._request("POST", self._model_path() + ":predict", body).get("outputs")
        if not isinstance(outputs, dict):
            raise ServingError("INVALID_RESPONSE", f"unexpected outputs: {outputs!r:.200}")
        return outputs

    def status(self) -> list[VersionStatus]:
        reply = self._request("GET", self._model_path())
        return [
            VersionStatus(
                version=int(s["version"]),
                state=s.get("state", "UNKNOWN"),
                error_code=s.get("status", {}).get("error_code", "OK"),
                error_message=s.get("status", {}).get("error_message", ""),
            )
            for s in reply.get("model_version_status", [])
        ]

    def metadata(self) -> ModelMetadata:
        reply = self._request("GET", self._model_path() + "/metadata")
        signatures = json_format.ParseDict(
            reply["metadata"]["signature_def"],
            get_model_metadata_pb2.SignatureDefMap(),
            ignore_unknown_fields=True,
        )
        spec = reply.get("model_spec", {})
        return ModelMetadata(
            name=spec.get("name", self.client.model_name),
            version=int(spec.get("version", 0)),
            signature_defs=dict(signatures.signature_def),
        )

    def close(self) -> None:
        self.http.close()


def _rest_error_message(response: httpx.Response) -> str:
    """TF Serving answers errors as ``{"error": "..."}``; anything else is shown as text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text.strip()


# tensorflow.error.Code numbers are gRPC's canonical codes.
_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


def status_code_name(code: int) -> str:
    """``"INVALID_ARGUMENT"`` for 3: the name of a TensorFlow / gRPC canonical error code."""
    return _CODE_NAMES.get(code, str(code))
