"""TF Serving's REST API on FastAPI: the ``/v1/models/...`` routes, errors and status codes.

Paths are matched with TF Serving's own regular expressions (``http_rest_api_handler.cc``),
because its predict route holds a colon (``/v1/models/tfsent/versions/2:predict``)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances"|"inputs": ...}
    POST ...:classify, ...:regress                               400/501 (predict models only)

Errors are ``{"error": "..."}`` with the HTTP status TF Serving maps the status code to; any
other ``/v1/`` request is ``400 Malformed request: METHOD PATH``. ``/docs`` shows the routes.
Prometheus metrics are served at the monitoring config's path when it enables them::

    app = create_app(manager, metrics, prometheus_path="/monitoring/prometheus/metrics")
    uvicorn.run(app, port=8501)
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import Response
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, model_pb2

from tfsent.model_server.grpc_api import (
    SIGNATURE_DEF_FIELD,
    check_example_signature,
    model_metadata,
)
from tfsent.model_server.manager import ModelManager
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.rest_json import parse_body, request_tensors, response_json, signature_name
from tfsent.model_server.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD
from tfsent.model_server.status import RequestError

log = logging.getLogger(__name__)

PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE,
)
V1_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
INT64_MAX = 2**63 - 1

PREDICT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "signature_name": {"type": "string", "default": DEFAULT_SIGNATURE},
                        "instances": {
                            "type": "array",
                            "description": "row format: one item per example",
                        },
                        "inputs": {"description": "columnar format: one value per input name"},
                    },
                    "example": {"instances": [{"text": "A great film, I loved it."}]},
                }
            }
        },
    }
}


def _route_doc(path: str, predict: bool = False) -> dict[str, Any]:
    """OpenAPI extras of a documented route: its path parameters (and the predict body)."""
    doc: dict[str, Any] = {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
    }
    if predict:
        doc.update(PREDICT_BODY_DOC)
    return doc


def _json_response(body: Any, status: int = 200, pretty: bool = True) -> Response:
    # Status and metadata are read by people (curl); predictions by programs, so compact.
    text = json.dumps(body, ensure_ascii=False, indent=1 if pretty else None)
    return Response(text, status_code=status, media_type="application/json")


def _proto_json(message: Any) -> dict[str, Any]:
    """A proto as TF Serving prints it: field names kept, default values printed."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _model_spec(name: str, version: str | None, label: str | None) -> Any:
    spec = model_pb2.ModelSpec(name=name)
    if version:
        number = int(version)
        if number > INT64_MAX:
            raise RequestError.invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = number
    elif label:
        spec.version_label = label
    return spec


class RestApi:
    """Request handling behind the routes (sync: runs on the REST worker threads)."""

    def __init__(self, manager: ModelManager, metrics: ServingMetrics | None) -> None:
        self.manager = manager
        self.metrics = metrics

    def handle(self, method: str, path: str, body: bytes) -> Response:
        started = time.perf_counter()
        api, model_name = "unknown", ""
        try:
            prediction = PREDICTION_PATH.fullmatch(path) if method == "POST" else None
            status = STATUS_PATH.fullmatch(path) if method == "GET" else None
            if prediction:
                model_name, version, label, api = prediction.groups()
                api = api.lower()
                reply = self._prediction(api, _model_spec(model_name, version, label), body)
            elif status:
                model_name, version, label, metadata = status.groups()
                model_name = model_name or ""
                api = "get_model_metadata" if metadata else "get_model_status"
                if not model_name:
                    raise RequestError.invalid_argument("Missing model name in request.")
                spec = _model_spec(model_name, version, label)
                reply = self._metadata(spec) if metadata else self._status(spec)
            else:
                raise RequestError.invalid_argument(f"Malformed request: {method} {path}")
            code = "OK"
            response = _json_response(reply, pretty=not prediction)
        except RequestError as err:
            code = err.code.name
            response = _json_response({"error": err.message}, err.http_status)
        except Exception as err:  # a bug answers 500 and the server keeps serving
            log.exception("REST %s %s failed", method, path)
            code = "INTERNAL"
            response = _json_response({"error": str(err) or type(err).__name__}, 500)
        if self.metrics is not None and api != "unknown":
            self.metrics.observe_request(
                model_name, api, "REST", code, time.perf_counter() - started
            )
        return response

    def _prediction(self, api: str, spec: Any, body: bytes) -> Any:
        doc = parse_body(body)
        spec.signature_name = signature_name(doc)
        if api != "predict":
            method, kind = {
                "classify": (CLASSIFY_METHOD, "classification"),
                "regress": (REGRESS_METHOD, "regression"),
            }[api]
            check_example_signature(self.manager, spec, method, kind)
        with self.manager.servable(spec) as handle:
            name = spec.signature_name or DEFAULT_SIGNATURE
            signature = handle.servable.signature_defs.get(name)
            if signature is None:
                raise RequestError.invalid_argument(
                    f'Serving signature name: "{name}" not found in signature def'
                )
            inputs, fmt = request_tensors(doc, signature.inputs)
            outputs = self.manager.run(handle, name, inputs)
        return response_json(outputs, fmt)

    def _status(self, spec: Any) -> Any:
        statuses = self.manager.status(spec)
        return {"model_version_status": [_proto_json(s) for s in statuses]}

    def _metadata(self, spec: Any) -> Any:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[SIGNATURE_DEF_FIELD]
        )
        response = model_metadata(self.manager, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        return {
            "model_spec": _proto_json(response.model_spec),
            "metadata": {SIGNATURE_DEF_FIELD: _proto_json(signature_map)},
        }


def create_app(
    manager: ModelManager,
    metrics: ServingMetrics | None = None,
    prometheus_path: str | None = None,
    num_threads: int = 16,
) -> FastAPI:
    """The REST app; ``prometheus_path`` serves the metrics there; ``num_threads`` bounds the
    requests running at once (``--rest_api_num_threads``)."""
    api = RestApi(manager, metrics)
    app = FastAPI(
        title="tfsent model server (TensorFlow Serving REST API)",
        description="TF Serving's REST API: model status, metadata and predict.",
        version="v1",
    )
    limiter: list[anyio.CapacityLimiter] = []

    async def dispatch(request: Request) -> Response:
        if not limiter:  # created inside the event loop, on the first request
            limiter.append(anyio.CapacityLimiter(num_threads))
        body = await request.body()
        return await anyio.to_thread.run_sync(
            api.handle, request.method, request.url.path, body, limiter=limiter[0]
        )

    if prometheus_path and metrics is not None:

        @app.get(prometheus_path, tags=["monitoring"], summary="Prometheus metrics")
        def prometheus_metrics() -> Response:
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)

    # Documented routes (for /docs); every one, and anything else, goes through ``dispatch``.
    for suffix, summary in (("", "Model status"), ("/metadata", "Model metadata (signatures)")):
        for prefix in ("", "/versions/{version}", "/labels/{label}"):
            path = f"/v1/models/{{model_name}}{prefix}{suffix}"
            app.add_api_route(
                path,
                dispatch,
                methods=["GET"],
                tags=["models"],
                summary=summary,
                openapi_extra=_route_doc(path),
            )
    for prefix in ("", "/versions/{version}", "/labels/{label}"):
        for verb in ("predict", "classify", "regress"):
            path = f"/v1/models/{{model_name}}{prefix}:{verb}"
            app.add_api_route(
                path,
                dispatch,
                methods=["POST"],
                tags=["predict"],
                summary=verb.capitalize(),
                openapi_extra=_route_doc(path, predict=verb == "predict"),
            )

    @app.api_route(
        "/{path:path}",
        methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
        include_in_schema=False,
    )
    async def anything_else(request: Request) -> Response:
        if V1_PATH.fullmatch(request.url.path):
            return await dispatch(request)
        return _json_response({"error": f"Not found: {request.method} {request.url.path}"}, 404)

    return app
