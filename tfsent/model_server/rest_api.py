"""TF Serving's REST API on FastAPI: the ``/v1/models/...`` routes, errors and status codes.

Paths are matched with TF Serving's own regular expressions (``http_rest_api_handler.cc``),
because its predict route holds a colon (``/v1/models/tfsent/versions/2:predict``)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances"|"inputs": ...}
    POST ...:classify, ...:regress                               400/501 (predict models only)

Every error is ``{"error": "..."}``, with the HTTP status TF Serving maps the status code to;
any other ``/v1/`` request, whatever its method, is ``400 Malformed request: METHOD PATH``, any
other path 404 (also what the framework itself refuses comes in that shape). ``/docs`` shows
the routes. Prometheus metrics are served at the monitoring config's path when it enables them.

Predict work (JSON parsing, the model run, the reply) goes to the REST ``RequestQueue``: a full
queue answers 503 before the body is read, a body over ``max_body_bytes`` 413 (both then read
and drop the rest of the body, for a bounded time: ``_LingeringResponse``), and a request not
answered within ``timeout`` seconds (``--rest_api_timeout_in_ms``) 504. Status and metadata are
answered on the event loop::

    app = create_app(core, service, RequestQueue("REST", 8, 64), metrics,
                     prometheus_path="/monitoring/prometheus/metrics")
    uvicorn.run(app, port=8501)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.responses import Response
from google.protobuf import json_format
from starlette.exceptions import HTTPException as StarletteHTTPException
from tensorflow_serving.apis import model_pb2

from tfsent.model_server.core import ServerCore
from tfsent.model_server.executor import RequestQueue, run_queued
from tfsent.model_server.metrics import ServingMetrics
from tfsent.model_server.rest_json import (
    COLUMNAR,
    ROW,
    parse_body,
    request_tensors,
    response_json,
    signature_name,
)
from tfsent.model_server.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD
from tfsent.model_server.service import SIGNATURE_DEF_FIELD, PredictionService
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
INTERNAL_ERROR = "Internal error (see the server log)"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
# Bounds of the lingering close after an answer that left the request body unread.
LINGER_SECONDS = 10.0
LINGER_IDLE_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024 * 1024

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


def _json_response(
    body: Any,
    status: int = 200,
    pretty: bool = True,
    headers: Mapping[str, str] | None = None,
    linger: bool = False,
) -> Response:
    """``body`` as JSON; ``linger`` for an answer sent before the request body was read."""
    # Status and metadata are read by people (curl); predictions by programs, so compact.
    text = json.dumps(body, ensure_ascii=False, indent=1 if pretty else None)
    try:
        content = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed in an error: escape it instead
        content = json.dumps(body, indent=1 if pretty else None).encode("ascii")
    if linger:
        return _LingeringResponse(content, status, media_type="application/json")
    return Response(content, status_code=status, headers=headers, media_type="application/json")


class _LingeringResponse(Response):
    """An answer to a request whose body was left unread (413, 503): sent at once, then the rest
    of the body is read and dropped before the connection closes, as nginx's and Apache's
    "lingering close". Closing a socket with unread data makes the kernel reset the connection,
    so a client that writes its whole body before reading (urllib, requests) would get
    "connection reset" instead of the answer. The drain is bounded (``LINGER_*``); uvicorn's
    flow control keeps at most one buffer of the body in memory at a time."""

    def __init__(self, content: bytes, status: int, media_type: str) -> None:
        super().__init__(content, status, headers={"connection": "close"}, media_type=media_type)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await _discard_body(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _discard_body(receive: Any) -> int:
    """Read and drop the rest of a request body, for at most ``LINGER_SECONDS`` (and
    ``LINGER_IDLE_SECONDS`` between reads) and ``LINGER_MAX_BYTES``; the bytes dropped."""
    end = time.monotonic() + LINGER_SECONDS
    dropped = 0
    while dropped <= LINGER_MAX_BYTES:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), min(left, LINGER_IDLE_SECONDS))
        except asyncio.TimeoutError:
            break
        if message["type"] != "http.request":  # the client is gone
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return dropped


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
    """Request handling behind the routes."""

    def __init__(
        self,
        core: ServerCore,
        service: PredictionService,
        queue: RequestQueue,
        metrics: ServingMetrics | None = None,
        max_body_bytes: int = 0,
        timeout: float | None = None,
        max_instances: int = 0,
    ) -> None:
        self.core = core
        self.service = service
        self.queue = queue
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.timeout = timeout
        self.max_instances = max_instances

    async def dispatch(self, request: Request) -> Response:
        started = time.perf_counter()
        method, path = request.method, request.url.path
        api, model_name = "unknown", ""
        unread = _has_body(request)  # until read: an answer then lingers (_LingeringResponse)
        try:
            prediction = PREDICTION_PATH.fullmatch(path) if method == "POST" else None
            status = STATUS_PATH.fullmatch(path) if method == "GET" else None
            if prediction:
                model_name, version, label, api = prediction.groups()
                api = api.lower()
                spec = _model_spec(model_name, version, label)
                self.queue.check_capacity()  # refuse before reading (and holding) the body
                body = await self._body(request)
                unread = False
                deadline = None if self.timeout is None else time.monotonic() + self.timeout
                reply = await run_queued(
                    self.queue, lambda: self._prediction(api, spec, body, deadline), deadline
                )
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
            response = _json_response({"error": err.message}, err.http_status, linger=unread)
        except Exception:  # a bug answers 500 and the server keeps serving
            log.exception("REST %s %s failed", method, path)
            code = "INTERNAL"
            response = _json_response({"error": INTERNAL_ERROR}, 500, linger=unread)
        if self.metrics is not None and api != "unknown":
            self.metrics.observe_request(
                model_name, api, "REST", code, time.perf_counter() - started
            )
        return response

    async def _body(self, request: Request) -> bytes:
        """The request body, refused (413) as soon as it is known to exceed the limit."""
        limit = self.max_body_bytes

        def too_large(size: str) -> RequestError:
            return RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Request body of {size} bytes exceeds this server's limit of {limit} bytes "
                "(--rest_api_max_body_bytes); send fewer or shorter instances per request",
                http_status=413,
            )

        declared = request.headers.get("content-length", "")
        if limit and declared.isdigit() and int(declared) > limit:
            raise too_large(declared)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if limit and size > limit:
                raise too_large(f"more than {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _prediction(self, api: str, spec: Any, body: bytes, deadline: float | None) -> Any:
        doc = parse_body(body)
        spec.signature_name = signature_name(doc)
        if api != "predict":
            method, kind = {
                "classify": (CLASSIFY_METHOD, "classification"),
                "regress": (REGRESS_METHOD, "regression"),
            }[api]
            self.service.check_example_signature(spec, method, kind)
        outputs, _ = self.service.predict(
            spec,
            lambda input_infos: request_tensors(doc, input_infos, self.max_instances)[0],
            deadline=deadline,
        )
        return response_json(outputs, ROW if "instances" in doc else COLUMNAR)

    def _status(self, spec: Any) -> Any:
        statuses = self.core.status(spec)
        return {"model_version_status": [_proto_json(s) for s in statuses]}

    def _metadata(self, spec: Any) -> Any:
        version, signature_map = self.service.metadata(spec)
        served = model_pb2.ModelSpec(name=spec.name)
        served.version.value = version
        return {
            "model_spec": _proto_json(served),
            "metadata": {SIGNATURE_DEF_FIELD: _proto_json(signature_map)},
        }


def create_app(
    core: ServerCore,
    service: PredictionService,
    queue: RequestQueue,
    metrics: ServingMetrics | None = None,
    prometheus_path: str | None = None,
    max_body_bytes: int = 0,
    timeout: float | None = None,
    max_instances: int = 0,
) -> FastAPI:
    """The REST app; ``prometheus_path`` serves the metrics there; limits as ``RestApi``'s."""
    api = RestApi(core, service, queue, metrics, max_body_bytes, timeout, max_instances)
    app = FastAPI(
        title="tfsent model server (TensorFlow Serving REST API)",
        description="TF Serving's REST API: model status, metadata and predict.",
        version="v1",
    )
    dispatch = api.dispatch

    if prometheus_path and metrics is not None:

        @app.get(prometheus_path, tags=["monitoring"], summary="Prometheus metrics")
        def prometheus_metrics() -> Response:
            body, content_type = metrics.exposition()
            return Response(body, media_type=content_type)

    _add_documented_routes(app, dispatch)

    async def anything_else(request: Request) -> Response:
        if V1_PATH.fullmatch(request.url.path):
            return await dispatch(request)
        return _json_response(
            {"error": f"Not found: {request.method} {request.url.path}"},
            404,
            linger=_has_body(request),
        )

    # Every HTTP method, as TF Serving's handler: a /v1/ request it has no route for is its 400
    # "Malformed request", anything else a 404 (other method names: the framework's 405).
    app.add_api_route(
        "/{path:path}", anything_else, methods=list(HTTP_METHODS), include_in_schema=False
    )

    async def framework_error(request: Request, exc: Exception) -> Response:
        # What the framework refuses by itself gets TF Serving's error shape too.
        if isinstance(exc, StarletteHTTPException):
            return _json_response({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)
        return _json_response({"error": INTERNAL_ERROR}, 500)

    app.add_exception_handler(StarletteHTTPException, framework_error)
    app.add_exception_handler(Exception, framework_error)
    return app


def _add_documented_routes(app: FastAPI, dispatch: Any) -> None:
    """The API's routes, for /docs; every one goes through ``dispatch``."""
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


def _has_body(request: Request) -> bool:
    """Whether the request comes with a body (that a handler may leave unread)."""
    headers = request.headers
    return headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
