"""Request errors with TF Serving's canonical status codes, and their REST (HTTP) equivalents.

TF Serving answers every failure with a ``tensorflow::Status``; over gRPC that is the call's status
code and details, over REST an HTTP status from ``ToHTTPStatusCode`` and ``{"error": message}``.
Messages that come from TensorFlow are cleaned first: graph node names, Python tracebacks and
absolute server paths are internals a client must not see::

    >>> err = RequestError.not_found("Servable not found for request: Latest(foo)")
    >>> err.code.name, err.http_status
    ('NOT_FOUND', 404)
    >>> clean_message("Graph execution error:\\n\\nDetected at node model/dense/MatMul defined at "
    ...               "(most recent call last):\\n  File \\"/srv/app.py\\", line 3\\n\\nindices[0] "
    ...               "= 7 is not in [0, 3)\\n\\t [[{{node model/Gather}}]] [Op:__inference_f_8]")
    'indices[0] = 7 is not in [0, 3)'
    >>> clean_message("{{function_node __inference_g_9}} indices[0] = 7 is not in [0, 3) "
    ...               "[[{{function_node __inference_f_8}}{{node model/Gather}}]]")
    'indices[0] = 7 is not in [0, 3)'
    >>> clean_message("no file at /srv/models/tfsent/3/saved_model.pb", ["/srv/models/tfsent"])
    'no file at 3/saved_model.pb'
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc

# tensorflow_serving/util/net_http/server/public/httpserver_interface.h via
# http_rest_api_handler's ToHTTPStatusCode: the mapping TF Serving's REST API uses.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# tensorflow.error.Code numbers are gRPC's canonical codes.
_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}

# Where in the graph: "[[{{node a/b}}]]", "[[{{function_node f}}{{node a/b}}]]" (an error inside a
# called function), a leading "{{function_node f}}", "[Op:f]", "(defined at ...)".
_NODE = re.compile(
    r"\s*\[\[(?:\{\{(?:function_)?node [^}]*\}\})+\]\]|\{\{function_node [^}]*\}\}\s*"
    r"|\s*\[Op:[^\]]*\]|\s*\(defined at [^)]*\)|<stack traces unavailable>\s*"
)
_DETECTED = re.compile(r"^(Detected at node|Detected unsupported operations|Node:)", re.I)
_PATH_PART = r"[^\s/'\"`,;:()\[\]{}<>|]"
_ABSOLUTE_PATH = re.compile(rf"(?<![\w.:/~-])/(?:{_PATH_PART}+/)*{_PATH_PART}*")
MAX_MESSAGE_CHARS = 2000


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code for a ``tensorflow.error.Code`` number (``3`` -> INVALID_ARGUMENT)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def clean_message(text: str, base_paths: Iterable[str] = ()) -> str:
    """A TensorFlow error message without node names, tracebacks or absolute paths.

    Paths under one of ``base_paths`` keep their part below it (``3/saved_model.pb``); other
    absolute paths keep their last component only.
    """
    kept = []
    skipping = False
    for line in text.replace("Graph execution error:", "").splitlines():
        stripped = line.strip()
        if _DETECTED.match(stripped):
            skipping = True  # the "defined at (most recent call last):" traceback follows
            continue
        if skipping and (not stripped or stripped.startswith("File ")):
            continue
        skipping = False
        line = _NODE.sub("", line).strip()
        if line:
            kept.append(line)
    message = " ".join(kept)
    roots = sorted((p.rstrip("/") for p in base_paths if p), key=len, reverse=True)

    def relative(match: re.Match) -> str:
        path = match.group(0)
        for root in roots:
            if path == root:
                return "."
            if path.startswith(root + "/"):
                return path[len(root) + 1 :]
        return path.rstrip("/").rsplit("/", 1)[-1] or path

    message = _ABSOLUTE_PATH.sub(relative, message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    return message or "error (details in the server log)"


def too_many_instances(rows: int, limit: int) -> str:
    return (
        f"Request holds {rows} instances, more than the {limit} this server takes per request "
        "(--max_instances_per_request); send them in smaller requests"
    )


class RequestError(Exception):
    """A request failed with a TF Serving status ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self._http_status = http_status  # where HTTP has a closer status (413 for a big body)

    @property
    def http_status(self) -> int:
        return self._http_status or _HTTP_STATUS.get(self.code, 500)

    @classmethod
    def invalid_argument(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message)

    @classmethod
    def not_found(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.NOT_FOUND, message)

    @classmethod
    def failed_precondition(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.FAILED_PRECONDITION, message)

    @classmethod
    def unavailable(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.UNAVAILABLE, message)

    @classmethod
    def unimplemented(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.UNIMPLEMENTED, message)

    @classmethod
    def internal(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.INTERNAL, message)

    @classmethod
    def deadline_exceeded(cls, message: str = "Deadline Exceeded") -> RequestError:
        return cls(grpc.StatusCode.DEADLINE_EXCEEDED, message)

    @classmethod
    def permission_denied(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.PERMISSION_DENIED, message)

    @classmethod
    def resource_exhausted(cls, message: str) -> RequestError:
        return cls(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
