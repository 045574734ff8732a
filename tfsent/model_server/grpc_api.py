"""TF Serving's gRPC API: ``PredictionService`` and ``ModelService`` servicers (the stubs and
messages of ``tensorflow-serving-api``) on a ``grpc.aio`` server: ``PredictionService`` over the
request service, ``ModelService`` over the server core, as in TF Serving.

Implemented: Predict, GetModelMetadata (``signature_def``), GetModelStatus and, when the server
allows it, HandleReloadConfigRequest. Classify and Regress check the signature like TF Serving
(a predict signature is INVALID_ARGUMENT) and otherwise answer UNIMPLEMENTED, as does
MultiInference.

Handlers are coroutines: Predict's work (tensor conversion, the model run, the reply) goes to
the gRPC ``RequestQueue``, whose bound answers UNAVAILABLE at once when it is full; the call's
deadline (or ``default_timeout`` seconds when the client sets none) bounds the wait. Status and
metadata are answered on the event loop::

    server = grpc.aio.server()
    add_servicers(server, core, service, RequestQueue("gRPC", 8, 64), metrics)

Request tensors are decoded as TensorFlow's ``Tensor::FromProto`` decodes them (a shape of
``[3]`` with one value is that value three times), and refused where it refuses them::

    >>> proto = tf.make_tensor_proto([b"ok"], dtype=tf.string)
    >>> tensor_from_proto(proto, "text").tolist()
    [b'ok']
    >>> proto.tensor_shape.dim[0].size = 3
    >>> tensor_from_proto(proto, "text").tolist()
    [b'ok', b'ok', b'ok']
    >>> proto.tensor_shape.dim[0].size = -5
    >>> tensor_from_proto(proto, "text")
    Traceback (most recent call last):
    ...
    tfsent.model_server.status.RequestError: INVALID_ARGUMENT: tensor parsing error: text
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfsent.model_server.core import ServerCore
from tfsent.model_server.executor import RequestQueue, run_queued
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD
from tfsent.model_server.service import SIGNATURE_DEF_FIELD, PredictionService
from tfsent.model_server.status import RequestError

log = logging.getLogger(__name__)

T = TypeVar("T")

# TensorShape's limits (tensor_shape.cc): no more dimensions, no more elements than these.
MAX_DIMENSIONS = 254
INT64_MAX = 2**63 - 1
# A tfsent limit: TensorFlow fills a tensor proto holding fewer values than its shape with the
# last value, so a few bytes could ask for terabytes. No request of the served signatures comes
# near this many values.
MAX_DECODED_ELEMENTS = 2**26


def tensor_from_proto(proto: Any, alias: str) -> np.ndarray:
    """A request's ``TensorProto`` as numpy (``tf.make_ndarray``), or TF Serving's
    ``tensor parsing error`` (INVALID_ARGUMENT) where ``Tensor::FromProto`` fails: a negative
    dimension (which ``make_ndarray`` would read as "whatever fits"), too many dimensions or
    elements, or content that does not fill the shape."""
    dims = [d.size for d in proto.tensor_shape.dim]
    elements = math.prod(dims)
    if any(n < 0 for n in dims) or len(dims) > MAX_DIMENSIONS or elements > INT64_MAX:
        raise RequestError.invalid_argument(f"tensor parsing error: {alias}")
    if elements > MAX_DECODED_ELEMENTS:
        raise RequestError.invalid_argument(
            f"tensor parsing error: {alias}: shape [{','.join(map(str, dims))}] holds {elements} "
            f"values, more than this server decodes ({MAX_DECODED_ELEMENTS}); send fewer "
            "instances per request"
        )
    try:
        return tf.make_ndarray(proto)
    except Exception:
        raise RequestError.invalid_argument(f"tensor parsing error: {alias}") from None


async def _call(
    metrics: ServingMetrics | None,
    api: str,
    model_name: str,
    context: grpc.aio.ServicerContext,
    handler: Callable[[], Awaitable[T]],
) -> T:
    """Run a handler; a ``RequestError`` becomes the call's status; count and time the call."""
    started = time.perf_counter()
    status = "OK"
    try:
        return await handler()
    except RequestError as err:
        status = err.code.name
        await context.abort(err.code, err.message)
    except Exception:
        log.exception("%s failed", api)
        status = grpc.StatusCode.INTERNAL.name
        await context.abort(grpc.StatusCode.INTERNAL, "Internal error (see the server log)")
    finally:
        if metrics is not None:
            metrics.observe_request(model_name, api, "GRPC", status, time.perf_counter() - started)
    raise AssertionError("unreachable: context.abort raises")


def _sync(function: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    async def run() -> T:
        return function()

    return run


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(
        self,
        service: PredictionService,
        queue: RequestQueue,
        metrics: ServingMetrics | None = None,
        default_timeout: float | None = None,
    ) -> None:
        self.service = service
        self.queue = queue
        self.metrics = metrics
        self.default_timeout = default_timeout

    def _deadline(self, context: grpc.aio.ServicerContext) -> float | None:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self.default_timeout
        return None if remaining is None else time.monotonic() + remaining

    def _predict(self, request: Any, deadline: float | None) -> Any:
        if not request.HasField("model_spec"):
            raise RequestError.invalid_argument("Missing ModelSpec")
        inputs = {alias: tensor_from_proto(proto, alias) for alias, proto in request.inputs.items()}
        outputs, version = self.service.predict(
            request.model_spec, inputs, list(request.output_filter), deadline
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    async def Predict(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        async def handle() -> Any:
            deadline = self._deadline(context)
            return await run_queued(
                self.queue, lambda: self._predict(request, deadline), deadline
            )

        return await _call(self.metrics, "predict", request.model_spec.name, context, handle)

    def _metadata(self, request: Any) -> Any:
        if not request.HasField("model_spec"):
            raise RequestError.invalid_argument("Missing ModelSpec")
        version, signature_map = self.service.metadata(
            request.model_spec, list(request.metadata_field)
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    async def GetModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _call(
            self.metrics,
            "get_model_metadata",
            request.model_spec.name,
            context,
            _sync(lambda: self._metadata(request)),
        )

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _call(
            self.metrics,
            "classify",
            request.model_spec.name,
            context,
            _sync(
                lambda: self.service.check_example_signature(
                    request.model_spec, CLASSIFY_METHOD, "classification"
                )
            ),
        )

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _call(
            self.metrics,
            "regress",
            request.model_spec.name,
            context,
            _sync(
                lambda: self.service.check_example_signature(
                    request.model_spec, REGRESS_METHOD, "regression"
                )
            ),
        )

    async def MultiInference(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle() -> Any:
            raise RequestError.unimplemented("MultiInference is not implemented by tfsent.serve")

        return await _call(self.metrics, "multi_inference", "", context, _sync(handle))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: ServerCore, metrics: ServingMetrics | None = None) -> None:
        self.core = core
        self.metrics = metrics

    async def GetModelStatus(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        def handle() -> Any:
            response = get_model_status_pb2.GetModelStatusResponse()
            response.model_version_status.extend(self.core.status(request.model_spec))
            return response

        return await _call(
            self.metrics, "get_model_status", request.model_spec.name, context, _sync(handle)
        )

    async def HandleReloadConfigRequest(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        def handle() -> Any:
            self.core.reload_config(request.config)
            return model_management_pb2.ReloadConfigResponse()

        return await _call(self.metrics, "reload_config", "", context, _sync(handle))


def add_servicers(
    server: Any,
    core: ServerCore,
    service: PredictionService,
    queue: RequestQueue,
    metrics: ServingMetrics | None = None,
    default_timeout: float | None = None,
) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(service, queue, metrics, default_timeout), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(core, metrics), server
    )
