"""The ops page: ``/ops``, an operator console across every org.

Not part of the ``/v1`` API (and not in its OpenAPI description). Enabled by
``IMPORTER_OPS_TOKEN``; without it every ``/ops`` URL is a ``404`` like any unknown
one. The token is accepted as the password of HTTP Basic authentication (any user
name, so a browser can log in) or as ``Authorization: Bearer <token>``, compared in
constant time.

    GET  /ops                         the page (Jinja, inline CSS, SVG and JavaScript)
    GET  /ops/data.json               what it shows, fetched by the page every 2 s
    POST /ops/batches/<id>/retry      re-drive a batch and hand its chunks to the broker

A browser sends Basic credentials by itself, also on a request another site makes
it send, so the retry also needs a header only a script of the page's own origin
can add (``X-Requested-With``; a cross-site request with it needs a CORS preflight,
which this service never grants) and, when the browser says where the request
comes from (``Origin``), this service's own origin.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import secrets
from typing import Any

from flask import Blueprint, Response, abort, g, render_template, request

from app.errors import BatchNotFound, CsrfCheckFailed, InvalidOpsToken
from app.extensions import db_session, services
from app.text_inputs import check_parameters
from importer.formatting import format_age
from importer.opsdata import FINISHED_BATCHES, console_data
from importer.redrive import BatchNotFound as UnknownBatch

log = logging.getLogger(__name__)

ops = Blueprint("ops", __name__, url_prefix="/ops")

REALM = "importer ops"
#: How often the page fetches data.json, in milliseconds.
REFRESH_MS = 2000


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _presented_token() -> str | None:
    """The token the request carries: a Bearer token or a Basic password."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, colon, password = decoded.partition(":")
        return password if colon else None
    return None


@ops.before_request
def _authenticate() -> None:
    token = services().settings.ops_token
    if not token:
        abort(404)  # disabled: indistinguishable from any unknown URL
    presented = _presented_token()
    # Digests of equal length, compared in constant time: neither the token nor its
    # length shows in the time an answer takes.
    if presented is None or not hmac.compare_digest(_digest(presented), _digest(token)):
        raise InvalidOpsToken(REALM)


ops.before_request(check_parameters)  # once authenticated: a disabled page stays a 404


@ops.after_request
def _protect(response: Response) -> Response:
    if not services().settings.ops_token:
        return response  # disabled: the 404 of any unknown URL, headers and all
    nonce = g.get("csp_nonce", "")
    script_style = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {script_style}; style-src {script_style}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def _clock(unix_seconds: int) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC).strftime("%H:%M:%S UTC")


def _data() -> dict[str, Any]:
    svc = services()
    return console_data(db_session(), svc.settings, svc.outbox.broker)


@ops.get("")
def page() -> str:
    g.csp_nonce = secrets.token_urlsafe(18)
    return render_template(
        "ops.html",
        data=_data(),
        nonce=g.csp_nonce,
        refresh_ms=REFRESH_MS,
        finished_shown=FINISHED_BATCHES,
        format_age=format_age,
        clock=_clock,
    )


@ops.get("/data.json")
def data() -> dict[str, Any]:
    return _data()


def _check_same_origin() -> None:
    if not request.headers.get("X-Requested-With", "").strip():
        raise CsrfCheckFailed(
            "Send this request from the ops page (the header X-Requested-With is missing)."
        )
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise CsrfCheckFailed(f"Requests from {origin} are not accepted.")


@ops.post("/batches/<batch_id>/retry")
def retry(batch_id: str) -> dict[str, Any]:
    _check_same_origin()
    try:
        done = services().outbox.redrive(batch_id)
    except UnknownBatch:
        raise BatchNotFound(f"No import batch {batch_id!r}.") from None
    log.info("ops page: %s", done.describe())
    return done.as_dict()
