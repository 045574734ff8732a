"""TF Serving's gRPC API: ``PredictionService`` and ``ModelService`` servicers (the stubs and
messages of ``tensorflow-serving-api``), over a ``ModelManager``.

Implemented: Predict, GetModelMetadata (``signature_def``), GetModelStatus and
HandleReloadConfigRequest. Classify and Regress check the signature like TF Serving (a predict
signature is INVALID_ARGUMENT) and otherwise answer UNIMPLEMENTED, as does MultiInference::

    server = grpc.server(ThreadPoolExecutor(8))
    add_servicers(server, manager, metrics)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsent.errors import UserError
from tfsent.model_server.manager import ModelManager
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD
from tfsent.model_server.server_config import validate_model_server_config
from tfsent.model_server.status import RequestError

log = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"
T = TypeVar("T")


def _call(
    metrics: ServingMetrics | None,
    api: str,
    model_name: str,
    context: grpc.ServicerContext,
    handler: Callable[[], T],
) -> T:
    """Run a handler; a ``RequestError`` becomes the call's status; count and time the call."""
    started = time.perf_counter()
    status = "OK"
    try:
        return handler()
    except RequestError as err:
        status = err.code.name
        context.abort(err.code, err.message)
    except Exception as err:
        log.exception("%s failed", api)
        status = grpc.StatusCode.INTERNAL.name
        context.abort(grpc.StatusCode.INTERNAL, str(err) or type(err).__name__)
    finally:
        if metrics is not None:
            metrics.observe_request(model_name, api, "GRPC", status, time.perf_counter() - started)
    raise AssertionError("unreachable: context.abort raises")


def model_metadata(manager: ModelManager, request: Any) -> Any:
    """GetModelMetadata as TF Serving's GetModelMetadataImpl (shared with the REST API)."""
    if not request.HasField("model_spec"):
        raise RequestError.invalid_argument("Missing ModelSpec")
    if not request.metadata_field:
        raise RequestError.invalid_argument(
            "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise RequestError.invalid_argument(f"Metadata field {field} is not supported")
    version, signature_defs = manager.signature_defs(request.model_spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = request.model_spec.name
    response.model_spec.version.value = version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signature_defs.items():
        signature_map.signature_def[name].CopyFrom(signature)
    response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
    return response


def check_example_signature(manager: ModelManager, spec: Any, method: str, kind: str) -> None:
    """Classify/Regress: TF Serving's signature checks, then UNIMPLEMENTED (no tf.Example path)."""
    with manager.servable(spec) as handle:
        signature = handle.servable.signature_def(spec.signature_name)
        if signature.method_name != method:
            raise RequestError.invalid_argument(
                f"Expected {kind} signature method_name to be {method}. "
                f"Was: {signature.method_name}"
            )
    raise RequestError.unimplemented(
        f"{kind} over tf.Example inputs is not implemented by tfsent.serve; use Predict"
    )


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, metrics: ServingMetrics | None = None) -> None:
        self.manager = manager
        self.metrics = metrics

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        def handle() -> Any:
            if not request.HasField("model_spec"):
                raise RequestError.invalid_argument("Missing ModelSpec")
            inputs = {}
            for alias, proto in request.inputs.items():
                try:
                    inputs[alias] = tf.make_ndarray(proto)
                except Exception:
                    raise RequestError.invalid_argument(f"tensor parsing error: {alias}") from None
            outputs, version = self.manager.predict(
                request.model_spec, inputs, list(request.output_filter)
            )
            response = predict_pb2.PredictResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = version
            response.model_spec.signature_name = (
                request.model_spec.signature_name or DEFAULT_SIGNATURE
            )
            for alias, value in outputs.items():
                response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
            return response

        return _call(self.metrics, "predict", request.model_spec.name, context, handle)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _call(
            self.metrics,
            "get_model_metadata",
            request.model_spec.name,
            context,
            lambda: model_metadata(self.manager, request),
        )

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _call(
            self.metrics,
            "classify",
            request.model_spec.name,
            context,
            lambda: check_example_signature(
                self.manager, request.model_spec, CLASSIFY_METHOD, "classification"
            ),
        )

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:
        return _call(
            self.metrics,
            "regress",
            request.model_spec.name,
            context,
            lambda: check_example_signature(
                self.manager, request.model_spec, REGRESS_METHOD, "regression"
            ),
        )

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:
        def handle() -> Any:
            raise RequestError.unimplemented("MultiInference is not implemented by tfsent.serve")

        return _call(self.metrics, "multi_inference", "", context, handle)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, metrics: ServingMetrics | None = None) -> None:
        self.manager = manager
        self.metrics = metrics

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        def handle() -> Any:
            response = get_model_status_pb2.GetModelStatusResponse()
            response.model_version_status.extend(self.manager.status(request.model_spec))
            return response

        return _call(self.metrics, "get_model_status", request.model_spec.name, context, handle)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:
        def handle() -> Any:
            try:
                config = validate_model_server_config(request.config, "ReloadConfigRequest")
            except UserError as err:
                raise RequestError.invalid_argument(str(err)) from None
            self.manager.configure(config)
            log.info("Reloaded the model config from a ReloadConfigRequest")
            return model_management_pb2.ReloadConfigResponse()

        return _call(self.metrics, "reload_config", "", context, handle)


def add_servicers(
    server: grpc.Server, manager: ModelManager, metrics: ServingMetrics | None = None
) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(manager, metrics), server
    )
