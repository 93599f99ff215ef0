"""One error envelope for every request-level failure:
``{"detail": {"code": "<snake_case>", "message": "<sentence>"}}``.

Views raise :class:`ApiError` (or let werkzeug raise an ``HTTPException``); the
handlers registered here turn both into the envelope. A fault of a backing
service becomes ``503 unavailable``; anything else unexpected is logged and
becomes ``500 internal_error`` without details.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.code = code or self.code
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(ApiError):
    status = 401
    code = "invalid_api_key"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="importer"'})


class NotFound(ApiError):
    status = 404
    code = "not_found"


class InvalidBody(ApiError):
    status = 422
    code = "invalid_body"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


# Codes for the HTTP errors werkzeug raises on its own.
_HTTP_CODES = {
    400: "bad_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_body",
    429: "rate_limited",
}

_HTTP_MESSAGES = {
    404: "There is nothing at this URL.",
    405: "This URL does not accept that method.",
}


def envelope(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"detail": {"code": code, "message": message, **extra}})
    response.status_code = status
    return response


def _handle_api_error(error: ApiError) -> Response:
    response = envelope(error.status, error.code, error.message, **error.extra)
    response.headers.update(error.headers)
    return response


def _handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    message = _HTTP_MESSAGES.get(status) or error.description or error.name
    if status == 413:
        message = "The request body is larger than this service accepts."
    response = envelope(status, code, message)
    for key, value in error.get_headers():
        if key.lower() not in ("content-type", "content-length"):
            response.headers[key] = value
    return response


def _is_unavailable(error: BaseException) -> bool:
    """A database or broker that could not be reached (as opposed to a bug)."""
    if isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    try:
        import kombu.exceptions
        import redis.exceptions

        if isinstance(
            error,
            kombu.exceptions.OperationalError
            | redis.exceptions.ConnectionError
            | redis.exceptions.TimeoutError,
        ):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(error, ConnectionError | TimeoutError)


def _handle_unexpected(error: Exception) -> Response:
    if _is_unavailable(error):
        log.warning("backing service unavailable: %s", error)
        response = envelope(
            503,
            "unavailable",
            "A backing service (database or queue) is unavailable; nothing was accepted. "
            "Retry later.",
        )
        response.headers["Retry-After"] = "5"
        return response
    log.exception("unhandled error")
    return envelope(500, "internal_error", "The service failed to handle this request.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
