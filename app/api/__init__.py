"""The ``/v1`` API. Every view in it runs after :func:`app.auth.authenticate`, the
org's request-rate limit (:mod:`app.ratelimits`) and the check of its path and query
parameters (:func:`app.text_inputs.check_parameters`)."""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter

from app.auth import authenticate, current_org
from app.blueprint import Blueprint
from app.errors import InvalidParameter, RateLimited, Unauthorized, Unavailable
from app.extensions import services
from app.text_inputs import check_parameters
from importer import logs
from importer.reports import RESERVED_SLUGS


def _after_authentication() -> None:
    """The org's id on every log line of the request, and its request-rate limit."""
    org_id = current_org().id
    logs.bind(org_id=org_id)
    limits = services().rate_limits
    if limits is not None:
        limits.check_request(org_id)


class ImportSlugConverter(BaseConverter):
    """The slug of ``/v1/import/<import_slug:slug>``: anything but a reserved slug, so
    ``/v1/import/batches`` is the batch list alone (its ``Allow`` lists only GET)."""

    regex = "(?!(?:{})(?:/|$))[^/]+".format("|".join(map(re.escape, sorted(RESERVED_SLUGS))))


api = Blueprint(
    "api",
    __name__,
    url_prefix="/v1",
    secured=True,
    # Any /v1 request: no key, a parameter holding NUL, over the rate, a backing service down.
    common_errors=(Unauthorized, InvalidParameter, RateLimited, Unavailable),
)
# Before the views' rules are added, which use it.
api.record_once(lambda state: state.app.url_map.converters.update(import_slug=ImportSlugConverter))
api.before_request(authenticate)
api.before_request(_after_authentication)
api.before_request(check_parameters)

# Views register themselves on ``api`` when imported.
from app.api import batches, imports, objects, reports, webhooks  # noqa: E402,F401
