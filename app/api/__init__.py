"""The ``/v1`` API. Every view in it runs after :func:`app.auth.authenticate`."""

from __future__ import annotations

from flask import Blueprint

from app.auth import authenticate

api = Blueprint("api", __name__, url_prefix="/v1")
api.before_request(authenticate)

# Views register themselves on ``api`` when imported.
from app.api import batches, imports, objects, reports, webhooks  # noqa: E402,F401
