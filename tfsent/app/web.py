"""The page's own small backend: FastAPI, one Jinja2 template, and a JSON API the page calls.

Routes (every error is ``{"error": "<one sentence>", "kind": "<keyword>"}`` with a 4xx/5xx):

- ``GET /``: the page.
- ``GET /api/info``: model name, served version, label names, server address, limits.
- ``POST /api/predict`` ``{"text": "..."}``: one prediction.
- ``POST /api/batch`` ``{"reviews": ["...", ...]}``: blank reviews are skipped.
- ``POST /api/batch/csv[?column=NAME]``: the CSV file itself as the body.

The routes are two ``APIRouter`` objects, ``pages`` and ``api``, that read the backend and the
limits from ``app.state`` through FastAPI dependencies; :func:`create_app` adds the security
headers and the error handlers around them.

Bounded: request bodies are read up to ``Limits.max_body_bytes`` (413 past it), batches hold
at most ``Limits.max_reviews`` reviews (413), reviews at most ``Limits.max_review_chars``
characters (422), and at most ``Limits.concurrent_calls`` model calls run at once.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from tfsent.app.backends import ModelBackend, ModelError
from tfsent.client import Prediction

HERE = Path(__file__).resolve().parent
# Column names taken as the reviews' column of an uploaded CSV, in this order.
TEXT_COLUMNS = ("review", "text", "sentence", "content", "comment")
# No inline script or style and nothing from another origin: the page works offline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Limits:
    max_reviews: int = 1000
    max_review_chars: int = 20_000
    max_body_bytes: int = 5 * 1024 * 1024
    concurrent_calls: int = 4
    # How often the page asks /api/info: while all is well, and while the server is down.
    poll_ok_ms: int = 15_000
    poll_error_ms: int = 2_000


class AppError(Exception):
    """A bad request: ``status`` (4xx) and one sentence naming the problem and the fix."""

    def __init__(self, status: int, message: str, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB"


def check_reviews(reviews: Sequence[str], limits: Limits, source: str) -> list[str]:
    """The non-blank reviews, or an ``AppError`` saying which limit a batch breaks."""
    kept = [r for r in reviews if r.strip()]
    if not kept:
        raise AppError(422, f"No reviews in {source}: paste one review per line, or upload a "
                            "CSV with a 'review' column.", "empty")
    if len(kept) > limits.max_reviews:
        raise AppError(413, f"{len(kept):,} reviews in {source}, more than the "
                            f"{limits.max_reviews:,} a batch may hold; split them into smaller "
                            "batches.", "too_many")
    for number, review in enumerate(kept, 1):
        if len(review) > limits.max_review_chars:
            raise AppError(422, f"Review {number} is {len(review):,} characters long, more than "
                                f"{limits.max_review_chars:,}; shorten it.", "too_long")
    return kept


def parse_csv(data: bytes, column: str | None = None) -> tuple[list[str], str | None]:
    """The review texts of an uploaded CSV and the column they came from.

    The reviews' column is ``column`` if given, else the first header named one of
    ``TEXT_COLUMNS`` (any case); a file of a single column without such a header is all reviews.

    >>> parse_csv(b'id,Review,stars\\n1,"Great, really",5\\n2,dull,1\\n')
    (['Great, really', 'dull'], 'Review')
    >>> parse_csv(b'great film\\ndull\\n')
    (['great film', 'dull'], None)
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise AppError(422, f"The file is not UTF-8 text (byte {err.start:,}); save the CSV as "
                            "UTF-8 and upload it again.", "bad_csv") from None
    if "\x00" in text:
        raise AppError(422, "The file holds NUL bytes, so it is not a CSV text file; export "
                            "the reviews as CSV (UTF-8) and upload that.", "bad_csv")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise AppError(422, f"The CSV cannot be read at line {reader.line_num:,}: {err}; check "
                            "its quotes (a quote inside a field is written twice).",
                       "bad_csv") from None
    if not rows:
        raise AppError(422, "The CSV is empty: give one review per row, under a 'review' "
                            "header.", "empty")
    header = [cell.strip() for cell in rows[0]]
    lowered = [cell.lower() for cell in header]
    if column is not None:
        if column.strip().lower() not in lowered:
            raise AppError(422, f"The CSV has no column '{column}'; its columns are "
                                f"{', '.join(header)}.", "bad_csv")
        index = lowered.index(column.strip().lower())
    else:
        index = next((lowered.index(c) for c in TEXT_COLUMNS if c in lowered), None)
    if index is None:
        if max(len(row) for row in rows) == 1:
            return [row[0] for row in rows if row], None
        raise AppError(422, f"The CSV has several columns ({', '.join(header)}) and none is "
                            f"named {' or '.join(TEXT_COLUMNS[:2])}; name the reviews' column "
                            "'review', or upload a single column.", "bad_csv")
    reviews = [row[index] if index < len(row) else "" for row in rows[1:]]
    return reviews, header[index]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes."""
    too_large = AppError(413, f"The upload is larger than {_size(limit)}, the most this page "
                              "takes at once; split it into smaller files.", "too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, example: str) -> dict[str, Any]:
    body = await read_body(request, limit)
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AppError(400, f"The request body is not JSON ({err}); send {example}.") from None
    if not isinstance(value, dict):
        raise AppError(422, f"The request body is not a JSON object; send {example}.")
    return value


def prediction_json(prediction: Prediction, review: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {} if review is None else {"review": review}
    result.update(
        label=prediction.label,
        confidence=prediction.confidence,
        probabilities=prediction.probabilities,
        label_id=prediction.label_id,
    )
    return result


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def create_app(
    backend: ModelBackend, limits: Limits | None = None, *, bind_host: str = ""
) -> FastAPI:
    """The app in front of ``backend``. When ``bind_host`` is a loopback address, requests must
    name a loopback host too, which keeps other web sites out (DNS rebinding)."""
    limits = limits or Limits()
    app = FastAPI(title="tfsent", docs_url=None, redoc_url=None, openapi_url=None)
    # What the routes share, read through their dependencies (get_backend, get_limits).
    app.state.backend = backend
    app.state.limits = limits
    app.state.calls = threading.BoundedSemaphore(limits.concurrent_calls)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    if _loopback(bind_host) and ":" not in bind_host:
        # Starlette cuts the Host header at its first ':', so IPv6 literals cannot be listed.
        app.add_middleware(TrustedHostMiddleware,
                           allowed_hosts=["127.0.0.1", "localhost", "*.localhost"])

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(AppError)
    async def app_error(request: Request, err: AppError) -> JSONResponse:
        return JSONResponse({"error": err.message, "kind": err.kind}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": f"{err.detail}: {request.method} {request.url.path}",
                             "kind": "http"}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(ModelError)
    async def model_error(request: Request, err: ModelError) -> JSONResponse:
        return JSONResponse({"error": err.message, "kind": err.kind}, status_code=err.status)

    app.include_router(pages)
    app.include_router(api)
    return app


# -- routes: the page, and the JSON API it calls ------------------------------------------------
def get_backend(request: Request) -> ModelBackend:
    return request.app.state.backend


def get_limits(request: Request) -> Limits:
    return request.app.state.limits


Backend = Annotated[ModelBackend, Depends(get_backend)]
AppLimits = Annotated[Limits, Depends(get_limits)]
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
pages = APIRouter()
api = APIRouter(prefix="/api")


async def call_model(request: Request, method: Any, *args: Any) -> Any:
    """``method(*args)`` in a worker thread, at most ``Limits.concurrent_calls`` at once."""
    calls = request.app.state.calls

    def locked() -> Any:
        with calls:
            return method(*args)

    return await run_in_threadpool(locked)


@pages.get("/", response_class=HTMLResponse)
async def page(request: Request, backend: Backend, limits: AppLimits) -> HTMLResponse:
    config = {**asdict(limits), "address": backend.address}
    return TEMPLATES.TemplateResponse(request, "index.html", {"config": config})


@api.get("/info")
async def info(request: Request, backend: Backend, limits: AppLimits) -> dict[str, Any]:
    model = await call_model(request, backend.info)
    return {**model.as_dict(), "limits": asdict(limits)}


@api.post("/predict")
async def predict(request: Request, backend: Backend, limits: AppLimits) -> dict[str, Any]:
    body = await read_json(request, limits.max_body_bytes, '{"text": "a review"}')
    text = body.get("text")
    if not isinstance(text, str):
        raise AppError(422, 'The request has no review; send {"text": "a review"}.')
    if not text.strip():
        raise AppError(422, "The review is empty: type a review first.", "empty")
    check_reviews([text], limits, "the request")
    (prediction,) = await call_model(request, backend.predict, [text])
    return prediction_json(prediction)


async def batch_reply(request: Request, backend: ModelBackend, reviews: list[str],
                      extra: dict[str, Any]) -> dict[str, Any]:
    predictions = await call_model(request, backend.predict, reviews)
    labels = list(predictions[0].probabilities)
    counts = Counter(p.label for p in predictions)
    return {
        "labels": labels,
        "counts": {label: counts.get(label, 0) for label in labels},
        "results": [prediction_json(p, r) for r, p in zip(reviews, predictions, strict=True)],
        **extra,
    }


@api.post("/batch")
async def batch(request: Request, backend: Backend, limits: AppLimits) -> dict[str, Any]:
    example = '{"reviews": ["a review", "another"]}'
    body = await read_json(request, limits.max_body_bytes, example)
    reviews = body.get("reviews")
    if not isinstance(reviews, list) or not all(isinstance(r, str) for r in reviews):
        raise AppError(422, f"'reviews' must be a list of texts; send {example}.")
    return await batch_reply(request, backend, check_reviews(reviews, limits, "the request"), {})


@api.post("/batch/csv")
async def batch_csv(request: Request, backend: Backend, limits: AppLimits,
                    column: str | None = None) -> dict[str, Any]:
    data = await read_body(request, limits.max_body_bytes)
    reviews, used = parse_csv(data, column)
    return await batch_reply(request, backend, check_reviews(reviews, limits, "the CSV"),
                             {"column": used})
