"""The web front end: authenticates, parses and validates synchronously, accepts
batches, and answers from what the workers recorded."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Flask, Response, g, request
from flask.json.provider import JSONProvider

from importer.config import Settings

#: The X-Request-ID honoured (else one is generated): it is stored with a batch (64 characters).
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


class OrjsonProvider(JSONProvider):
    """orjson for every JSON body the app writes (several times faster than json)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return Response(
            orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), mimetype="application/json"
        )


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Application factory: defaults, then the environment, then ``config``.

    ``config`` is either a complete :class:`Settings` or a mapping of setting
    names to override on top of the environment (what tests pass).
    """
    from app.errors import register_error_handlers
    from app.extensions import build_services, close_db_session

    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**dict(config or {}))

    app = Flask(__name__, static_folder=None)
    app.json = OrjsonProvider(app)
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["importer"] = build_services(settings)

    @app.before_request
    def _request_id() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response

    app.teardown_appcontext(close_db_session)
    register_error_handlers(app)

    from app.observability import init_app as init_observability

    init_observability(app, settings)  # metrics, access lines, log ids; GET /metrics

    from app.api import api
    from app.health import health
    from app.observability import observability
    from app.openapi import init_api, openapi

    # The documented blueprints: each adds its views' declarations to the document.
    documented = init_api(app)
    for blueprint in (health, api, observability, openapi):
        documented.register_blueprint(blueprint)
    from app.ops import ops

    app.register_blueprint(ops)  # /ops: the operator console (not part of the /v1 API)
    return app
