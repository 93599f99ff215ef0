"""What the web writes about itself: ``GET /metrics``, one access line per request,
and the ids every log line of a request carries.

* Each request binds its ``request_id`` (and, once authenticated, its ``org_id``;
  the batch views add ``batch_id``) to the logging context, counts itself in
  ``importer_http_requests_total`` and ``importer_http_request_duration_seconds``
  by its URL rule (``/v1/import/<slug>``, never the raw path; ``unmatched`` for a
  URL of no rule) and its method (``other`` for a non-standard one), and writes one
  ``app.access`` line: method, route, path, status, duration_ms (gunicorn's own
  access log is off, see :class:`importer.logs.GunicornLogger`).
* ``GET /metrics`` adds up what every process wrote to the metrics folder
  (:mod:`importer.metrics`) and the gauges of :func:`importer.monitoring.overview`,
  read at most every 2 s. It carries no org data and needs no API key; with
  ``IMPORTER_METRICS_TOKEN`` set it asks for ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import logging
import re
import time

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Rule

from app.blueprint import Blueprint
from app.errors import InvalidMetricsToken
from importer import logs, metrics
from importer.config import Settings
from importer.monitoring import Overview, overview

log = logging.getLogger(__name__)
access_log = logging.getLogger("app.access")

observability = Blueprint("observability", __name__)

_OVERVIEW = "importer_overview"
UNMATCHED = "unmatched"


_CONVERTER = re.compile(r"<[^:<>]+:([^<>]+)>")


def _route() -> str:
    """The URL rule that answered (without converters: ``/v1/import/<slug>``), or, for
    a method the URL does not take (405), the rule of that URL: the route label is
    bounded by the app's rules either way."""
    rule = request.url_rule
    error = request.routing_exception
    if rule is None and isinstance(error, MethodNotAllowed) and error.valid_methods:
        rule = _rule_of_url(next(iter(error.valid_methods)))
    return _CONVERTER.sub(r"<\1>", rule.rule) if rule is not None else UNMATCHED


def _rule_of_url(method: str) -> Rule | None:
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        rule, _ = adapter.match(method=method, return_rule=True)
    except HTTPException:
        return None
    return rule


def _start() -> None:
    g.started_at = time.perf_counter()
    logs.clear()
    logs.bind(request_id=g.get("request_id"))


def _finish(response: Response) -> Response:
    started = g.get("started_at")
    seconds = time.perf_counter() - started if started is not None else 0.0
    route = _route()
    metrics.observe_request(request.method, route, response.status_code, seconds)
    access_log.info(
        "%s %s %s %.1fms",
        request.method,
        request.path,
        response.status_code,
        seconds * 1000,
        extra={
            "method": request.method,
            "route": route,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 1),
        },
    )
    return response


def _end(_error: BaseException | None = None) -> None:
    logs.clear()


def _load_overview(app: Flask) -> Overview:
    svc = app.extensions["importer"]
    with svc.db.session() as session:
        return overview(session, svc.settings, svc.outbox.broker)


def init_app(app: Flask, settings: Settings) -> None:
    """Metrics folder, request hooks and ``/metrics`` for ``app``. Called by
    :func:`app.create_app` after the request-id hook, so the id is known here."""
    metrics.configure(settings)
    metrics.start()
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_end)
    app.extensions[_OVERVIEW] = metrics.CachedOverview(lambda: _load_overview(app), ttl=2.0)


def _check_token(settings: Settings) -> None:
    expected = settings.metrics_token
    if not expected:
        return
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    # Bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 401).
    presented = token.strip().encode("utf-8", "surrogatepass")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected.encode()):
        raise InvalidMetricsToken()


@observability.get("/metrics", tags=["Health"])
@observability.doc(operationId="metrics")
@observability.errors(InvalidMetricsToken)
@observability.answers(
    200, {"type": "string"}, content_type="text/plain", description="The Prometheus text format."
)
def metrics_view() -> Response:
    """Prometheus metrics of every web and worker process

    No API key (it carries no org data); a bearer token only when
    IMPORTER_METRICS_TOKEN is set.
    """
    settings: Settings = current_app.config["SETTINGS"]
    _check_token(settings)
    cached = current_app.extensions[_OVERVIEW]
    body, content_type = metrics.render([metrics.OverviewCollector(cached)])
    return Response(body, content_type=content_type)
