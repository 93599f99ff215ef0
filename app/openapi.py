"""The frame of the OpenAPI 3 document, served at ``GET /openapi.json`` (no auth).

The operations are not described here: each view declares what it parses and what it
answers next to its code (:mod:`app.blueprint`), and flask-smorest adds them to the
document when its blueprint is registered (:func:`app.create_app`). This module holds
what is the document's own: title, version, description, tags, the security scheme,
the response headers operations refer to, and the view that serves it.

The document is the same for every deployment (no setting changes it) and is written,
keys sorted, to ``docs/openapi.json`` (``make openapi``); a test fails while the
committed file differs from what the code declares.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import flask_smorest
import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app
from flask_smorest.spec.plugins import FlaskPlugin
from marshmallow import fields

from app import errors
from app.blueprint import BEARER, HEADERS, JSON, Blueprint, error_response
from app.schemas import OpenApiDocumentSchema

OPENAPI_VERSION = "3.0.3"
_EXTENSION = "openapi"

openapi = Blueprint("openapi", __name__)


@openapi.get("/openapi.json", tags=["Health"])
@openapi.doc(operationId="openapi")
@openapi.answers(200, OpenApiDocumentSchema, description="The OpenAPI document.")
def openapi_json() -> Response:
    """This document"""
    body = current_app.extensions.get(_EXTENSION)
    if body is None:
        body = orjson.dumps(_spec(current_app).to_dict())
        current_app.extensions[_EXTENSION] = body
    return Response(body, mimetype=JSON)


def _spec(app: Flask) -> APISpec:
    """The document flask-smorest built for ``app`` (:func:`init_api`)."""
    spec: APISpec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec
    return spec


def _version() -> str:
    try:
        return importlib.metadata.version("bulk-importer")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "0.0.0"


_DESCRIPTION = """\
Push batches of vendor, service and assessment records; each record is validated,
then created or updated by its `external_id`, and the answer comes back record by
record. Every `/v1` path takes `Authorization: Bearer ak_...`; a key sees only its
org. IDs are `<prefix>_<32 hex>`, timestamps integer Unix seconds. Request-level
errors share one envelope: `{"detail": {"code": "<snake_case>", "message": "..."}}`.
"""

_TAGS = [
    {
        "name": "Import reports",
        "description": "Named import endpoints: a base object and a mapping.",
    },
    {"name": "Imports", "description": "The import call."},
    {"name": "Batches", "description": "Import batches and their per-record outcome."},
    {"name": "Base objects", "description": "What the imports wrote, read back."},
    {
        "name": "Webhooks",
        "description": "Import.Completed and Import.Failed, POSTed to the org's endpoints.",
    },
    {"name": "Health", "description": "Liveness, readiness and this document."},
]


def _dict_length(converter: Any, field: fields.Field, ret: dict[str, Any], **_: Any) -> dict:
    """A ``Length`` on a ``Dict`` bounds its number of keys (apispec writes it as a
    string length)."""
    if not isinstance(field, fields.Dict):
        return {}
    bounds: dict[str, Any] = {}
    for string_bound, object_bound in (
        ("minLength", "minProperties"),
        ("maxLength", "maxProperties"),
    ):
        if string_bound in ret:
            bounds[object_bound] = ret.pop(string_bound)
    return bounds


class _PathPlugin(FlaskPlugin):
    """Paths from the Flask rules; their parameters are the ones each view declares
    (``@bp.path_parameters``), never a bare string guessed from the rule."""

    def rule_to_params(self, rule: Any) -> list[dict[str, Any]]:
        return []


class Api(flask_smorest.Api):
    """flask-smorest's Api, for the document only: errors are answered by
    :mod:`app.errors`, the document is served by :func:`openapi_json`, and the
    operations carry their own tags."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        return None

    def _register_doc_blueprint(self) -> None:
        return None

    # Every error response is written from app.errors (app.blueprint); no ETags, no
    # pagination headers: none of flask-smorest's own components is used.
    def _register_responses(self) -> None:
        return None

    def _register_etag_headers(self) -> None:
        return None

    def _register_pagination_header(self) -> None:
        return None

    def register_blueprint(self, blp: Any, *, parameters: Any = None, **options: Any) -> None:
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)
        blp.register_views_in_doc(self, self._app, self.spec, name=name, parameters=parameters)


def init_api(app: Flask) -> Api:
    """The document's frame for ``app``: title, version, tags, security scheme and the
    headers responses refer to. Blueprints registered through it add their operations."""
    marshmallow_plugin = MarshmallowPlugin()
    api = Api(
        app,
        spec_kwargs={
            "title": "Bulk importer",
            "version": _version(),
            "openapi_version": OPENAPI_VERSION,
            "flask_plugin": _PathPlugin(),
            "marshmallow_plugin": marshmallow_plugin,
            "info": {"description": _DESCRIPTION},
            "tags": _TAGS,
        },
    )
    converter = marshmallow_plugin.converter
    assert converter is not None  # set when the spec initialised the plugin
    converter.add_attribute_function(_dict_length)
    api.spec.components.security_scheme(
        BEARER,
        {"type": "http", "scheme": "bearer", "description": "An org's API key (ak_...)."},
    )
    for component_id, (_name, field, description, required) in HEADERS.items():
        api.spec.components.header(
            component_id,
            {
                "description": description,
                "required": required,
                "schema": converter.field2property(field),
            },
        )
    # One response per error code, referred to by the operations that answer it alone.
    for cls in errors.codes():
        api.spec.components.response(cls.__name__, error_response([cls]), lazy=True)
    return api


def document(app: Flask) -> bytes:
    """The document as committed in ``docs/openapi.json``: keys sorted, indented, so it
    is the same bytes on every run and a change to the API is a readable diff."""
    body = orjson.dumps(_spec(app).to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return body + b"\n"


def main() -> None:
    """``python -m app.openapi``: the document, to stdout (``make openapi`` writes it to
    docs/openapi.json)."""
    import sys
    import tempfile

    from app import create_app
    from importer.config import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"IMPORTER_DATA_DIR": folder})
        sys.stdout.buffer.write(document(create_app(settings)))


if __name__ == "__main__":
    main()
