"""One error envelope for every request-level failure:
``{"detail": {"code": "<snake_case>", "message": "<sentence>"}}``, and every code the
API answers, one class each.

Views raise an :class:`ApiError` subclass (or let werkzeug raise an
``HTTPException``); the handlers registered here turn both into the envelope. A
fault of a backing service becomes ``503 unavailable``; anything else unexpected is
logged and becomes ``500 internal_error`` without details.

Each class carries its status, its code, what the code means (``description``) and
the headers it always sends: the views declare the classes they raise
(``@api.errors(...)``, :mod:`app.api.blueprint`), and the OpenAPI document's error
responses and the README's table of codes are written from them.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import sqlalchemy.exc
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from importer import catalog

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request-level failure: ``status``, ``code`` and a message for people."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    #: What the code means, for the API document and the README (Markdown).
    description: ClassVar[str] = "The request is not valid."
    #: Response headers it always sends: ids of the document's header components
    #: (:data:`app.openapi.HEADERS`).
    sends: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class BadRequest(ApiError):
    status = 400
    code = "bad_request"
    description = "The request could not be read as HTTP (werkzeug's own 400)."


# --- 401 and 403 -----------------------------------------------------------------


class Unauthorized(ApiError):
    status = 401
    code = "invalid_api_key"
    description = (
        "No, malformed, unknown or revoked API key (a revoked key within 10 s, see "
        "[API keys](#api-keys))."
    )
    sends = ("WwwAuthenticate",)

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="importer"'})


class InvalidMetricsToken(ApiError):
    status = 401
    code = "invalid_metrics_token"
    description = (
        "`GET /metrics` only: `IMPORTER_METRICS_TOKEN` is set and the request did not send "
        "it as `Authorization: Bearer <token>`."
    )
    sends = ("WwwAuthenticate",)

    def __init__(self) -> None:
        super().__init__(
            "Send the metrics token in the header 'Authorization: Bearer <token>' "
            "(IMPORTER_METRICS_TOKEN).",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


class InvalidOpsToken(ApiError):
    status = 401
    code = "invalid_ops_token"
    description = (
        "The ops page only: its token (`IMPORTER_OPS_TOKEN`) was not sent, or not this one."
    )
    sends = ("WwwAuthenticate",)

    def __init__(self, realm: str) -> None:
        super().__init__(
            "Log in with the ops token: as the password of HTTP Basic authentication "
            "(any user name), or as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'},
        )


class CsrfCheckFailed(ApiError):
    status = 403
    code = "csrf_check_failed"
    description = (
        "The ops page only: an action came without `X-Requested-With`, or from another origin."
    )


# --- 404 -------------------------------------------------------------------------


class NotFound(ApiError):
    status = 404
    code = "not_found"
    description = "There is nothing at this URL."


class ReportNotFound(NotFound):
    code = "report_not_found"
    description = "No live report of that slug in the org."


class BatchNotFound(NotFound):
    code = "batch_not_found"
    description = "No batch of that id in the org."


class WebhookNotFound(NotFound):
    code = "webhook_not_found"
    description = "No live webhook of that id in the org."


class ObjectNotFound(NotFound):
    """``<base object>_not_found``: one subclass per base object (:data:`OBJECT_NOT_FOUND`)."""

    base_object: ClassVar[str] = ""


def _object_not_found(base: catalog.BaseObject) -> type[ObjectNotFound]:
    return type(
        f"{base.name.title()}NotFound",
        (ObjectNotFound,),
        {
            "code": f"{base.name}_not_found",
            "description": f"No {base.name} of that id in the org.",
            "base_object": base.name,
            "__module__": __name__,
        },
    )


#: Base object name -> the class of its ``<name>_not_found``.
OBJECT_NOT_FOUND: dict[str, type[ObjectNotFound]] = {
    base.name: _object_not_found(base) for base in catalog.CATALOG.values()
}


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"
    description = "This URL does not take that method; `Allow` lists those it takes."


# --- 409 and 410 -----------------------------------------------------------------


class SlugTaken(ApiError):
    status = 409
    code = "slug_taken"
    description = "The org already has a live report with this slug."


class RequestInProgress(ApiError):
    status = 409
    code = "request_in_progress"
    description = "A request with this `Idempotency-Key` is still being accepted."
    sends = ("RetryAfterOptional",)


class BatchNotDone(ApiError):
    status = 409
    code = "batch_not_done"
    description = (
        "A stream (NDJSON or CSV) was asked for while the batch is still queued or "
        "processing; wait for it (`GET /v1/import/batches/{batch_id}?wait=N`)."
    )
    sends = ("RetryAfter",)


class DetailsExpired(ApiError):
    status = 410
    code = "batch_details_expired"
    description = (
        "The batch's per-record details were deleted `IMPORTER_BATCH_DETAIL_RETENTION_DAYS` "
        "after it finished; its summary is still there."
    )


# --- 413 and 415 -----------------------------------------------------------------


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"
    description = (
        "The body (or, gzipped, its decompressed content) is over "
        "`IMPORTER_MAX_BODY_BYTES` (64 MiB by default)."
    )


class TooManyRecords(ApiError):
    status = 413
    code = "too_many_records"
    description = "More than `IMPORTER_MAX_RECORDS` (100,000 by default) records."


class BatchOverRateLimit(ApiError):
    status = 413
    code = "batch_over_rate_limit"
    description = (
        "More records than the org may import per minute "
        "(`IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE`): the batch could never pass, split it "
        "(see [Rate limits](#rate-limits))."
    )


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    description = (
        "A media type this operation does not take (the import call: JSON, NDJSON or "
        "CSV), a charset other than UTF-8, a `Content-Encoding` other than gzip."
    )


# --- 422 -------------------------------------------------------------------------


class InvalidBody(ApiError):
    status = 422
    code = "invalid_body"
    description = (
        "The body is not of the operation's shape: not JSON, no `data` array, a record "
        "that is not an object (in a JSON body), an empty batch, a CSV without a header "
        "row or with a repeated column, not UTF-8, not valid gzip; a report or webhook "
        "body that does not fit its schema or holds a NUL character or a lone surrogate "
        "anywhere. `detail.errors` lists each problem with its `field`: the path of the "
        "value in the body, such as `mapping.website`."
    )


class InvalidParameter(ApiError):
    status = 422
    code = "invalid_parameter"
    description = (
        "A query parameter of the wrong type or out of range, or one that is not a cursor "
        "of this list; a path or query parameter holding a NUL character (`%00`), which no "
        "slug, id or stored value does (checked once the key is)."
    )


class InvalidMapping(ApiError):
    status = 422
    code = "invalid_mapping"
    description = (
        "The mapping does not fit the field catalog; `detail.errors` lists each problem "
        "with its `field` (`mapping.<field>`)."
    )


class InvalidWebhookUrl(ApiError):
    status = 422
    code = "invalid_webhook_url"
    description = (
        "A webhook URL whose address, or every address its name resolves to, is not "
        "public (loopback, private, link-local, carrier-grade NAT, multicast, unspecified "
        "or reserved) and not in `IMPORTER_WEBHOOK_ALLOW_NETWORKS` (see "
        "[Webhooks](#webhooks))."
    )


class InvalidIdempotencyKey(ApiError):
    status = 422
    code = "invalid_idempotency_key"
    description = "The `Idempotency-Key` is not 1 to 255 printable ASCII characters."


class IdempotencyKeyReused(ApiError):
    status = 422
    code = "idempotency_key_reused"
    description = "The `Idempotency-Key` was used before with a different request."


# --- 429, 500, 503 ---------------------------------------------------------------


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"
    description = (
        "The org is over one of its [rate limits](#rate-limits) "
        "(`IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND`, or, for an import, this batch's "
        "records do not fit in what is left of `IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE`); "
        "nothing was done. Retry after `Retry-After` seconds."
    )
    sends = ("RetryAfter",)

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class InternalError(ApiError):
    status = 500
    code = "internal_error"
    description = "The service failed to handle the request (it is logged, with its id)."


class Unavailable(ApiError):
    status = 503
    code = "unavailable"
    description = (
        "The database or the broker is down; nothing was accepted. Retry after "
        "`Retry-After` seconds."
    )
    sends = ("RetryAfter",)

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


def codes() -> list[type[ApiError]]:
    """Every code's class, by status then code (the README's table)."""
    found: list[type[ApiError]] = []
    stack: list[type[ApiError]] = [ApiError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls is not ApiError and cls is not ObjectNotFound:
            found.append(cls)
    return sorted(found, key=lambda cls: (cls.status, cls.code))


def markdown_table() -> str:
    """The README's table of error codes, written from the classes."""
    lines = ["| status | `code` | when |", "|---|---|---|"]
    lines += [f"| {cls.status} | `{cls.code}` | {cls.description} |" for cls in codes()]
    return "\n".join(lines)


# Codes for the HTTP errors werkzeug raises on its own (a URL no rule matches, a
# method a rule does not take, a body over MAX_CONTENT_LENGTH).
_HTTP_CODES = {
    400: BadRequest.code,
    401: Unauthorized.code,
    404: NotFound.code,
    405: MethodNotAllowed.code,
    413: PayloadTooLarge.code,
    415: UnsupportedMediaType.code,
    422: InvalidBody.code,
    429: RateLimited.code,
}

_HTTP_MESSAGES = {
    404: NotFound.description,
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
        return _handle_api_error(
            Unavailable(
                "A backing service (database or queue) is unavailable; nothing was accepted. "
                "Retry later."
            )
        )
    log.exception("unhandled error")
    return _handle_api_error(InternalError("The service failed to handle this request."))


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
