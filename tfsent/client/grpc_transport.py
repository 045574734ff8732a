"""The gRPC side of ``SentimentClient``: TF Serving's PredictionService and ModelService stubs on
one channel, as in TF Serving's ``example/resnet_client_grpc.py``, with the messages and stubs of
``tfsent.client.protos`` (generated from TF Serving's ``.proto`` sources, no TensorFlow)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np

from tfsent.client.predictions import ModelMetadata, ServingError, VersionStatus, status_code_name
from tfsent.client.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tfsent.client.tensors import string_tensor, to_ndarray
from tfsent.client.transport import ModelSpec, TlsFiles
from tfsent.signatures import CLASSES, LOGITS, OUTPUTS, TEXT_INPUT

T = TypeVar("T")

# ``logits`` is not asked for: nobody reads it here and it doubles the reply.
REQUESTED_OUTPUTS = tuple(name for name in OUTPUTS if name != LOGITS)


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files (system roots when ``tls.root_certificates`` is ``None``).

    >>> type(channel_credentials(TlsFiles())).__name__
    'ChannelCredentials'
    """

    def read(path: str | Path | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.root_certificates),
        private_key=read(tls.client_key),
        certificate_chain=read(tls.client_cert),
    )


class GrpcTransport:
    """One channel to ``target`` (``host:port``): TLS with ``tls``, plaintext when ``None``.

    Missing or unreadable PEM files raise ``OSError`` here, before anything is sent.
    """

    def __init__(
        self,
        target: str,
        model: ModelSpec,
        *,
        timeout: float,
        tls: TlsFiles | None,
        headers: Mapping[str, str] | None,
        max_message_bytes: int,
        label_names: Sequence[str] | None,
    ) -> None:
        self.model = model
        self.timeout = timeout
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if tls is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            self.channel = grpc.secure_channel(target, channel_credentials(tls), options=options)
        # gRPC metadata keys must be lowercase.
        self.call_metadata = [(k.lower(), v) for k, v in (headers or {}).items()]
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        # Given names key the probabilities, so the served ones need not travel.
        self.outputs = tuple(
            name for name in REQUESTED_OUTPUTS if label_names is None or name != CLASSES
        )

    def _call(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, timeout=self.timeout, metadata=self.call_metadata)
        except grpc.RpcError as err:
            code = err.code()
            raise ServingError(
                code.name, err.details() or "", retryable=code == grpc.StatusCode.UNAVAILABLE
            ) from None

    def predict(self, texts: list[str]) -> dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        self.model.fill(request.model_spec)
        request.inputs[TEXT_INPUT].CopyFrom(string_tensor(texts))
        request.output_filter.extend(self.outputs)
        response = self._call(self.predictions.Predict, request)
        return {name: to_ndarray(proto) for name, proto in response.outputs.items()}

    def status(self, model: ModelSpec | None = None) -> list[VersionStatus]:
        request = get_model_status_pb2.GetModelStatusRequest()
        (model or self.model).fill(request.model_spec, signature=False)
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
        self.model.fill(request.model_spec, signature=False)
        request.metadata_field.append("signature_def")
        response = self._call(self.predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(signatures):
            raise ServingError("INVALID_RESPONSE", "the metadata's signature_def is a "
                               f"{response.metadata['signature_def'].TypeName()}, "
                               "not a tensorflow.serving.SignatureDefMap")
        return ModelMetadata(
            name=response.model_spec.name,
            version=response.model_spec.version.value,
            signature_defs=dict(signatures.signature_def),
        )

    def close(self) -> None:
        self.channel.close()
