"""Request errors with TF Serving's canonical status codes, and their REST (HTTP) equivalents.

TF Serving answers every failure with a ``tensorflow::Status``; over gRPC that is the call's status
code and details, over REST an HTTP status from ``ToHTTPStatusCode`` and ``{"error": message}``::

    >>> err = RequestError.not_found("Servable not found for request: Latest(foo)")
    >>> err.code.name, err.http_status
    ('NOT_FOUND', 404)
"""

from __future__ import annotations

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


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code for a ``tensorflow.error.Code`` number (``3`` -> INVALID_ARGUMENT)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class RequestError(Exception):
    """A request failed with a TF Serving status ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

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
