"""The OpenAPI 3 description of the whole API, served at ``GET /openapi.json`` (no auth).

Bodies, query strings, headers and path parameters are described by the marshmallow
schemas of :mod:`app.schemas` and turned into OpenAPI by apispec; this module only
says which operation answers what. The paths are read from the app's URL map (Flask
rule -> OpenAPI path by apispec-webframeworks' FlaskPlugin), so a rule whose endpoint
is not described in :func:`_operations` is left out, and
``tests/app/test_openapi.py`` fails until it is described.

The document is built once per app, on first request, and kept in
``app.extensions``: it depends on the app's settings (record limit, longest wait).
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import orjson
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app
from marshmallow import Schema, fields, validate

from app import _REQUEST_ID_RE, schemas
from app.parsing import CSV_TYPES, NDJSON_TYPES
from importer import catalog
from importer.config import Settings
from importer.outcomes import CSV as CSV_STREAM
from importer.outcomes import NDJSON as NDJSON_STREAM

OPENAPI_VERSION = "3.0.3"
BEARER = "bearerAuth"
JSON = "application/json"
_EXTENSION = "openapi"

openapi = Blueprint("openapi", __name__)


@openapi.get("/openapi.json")
def openapi_json() -> Response:
    body = current_app.extensions.get(_EXTENSION)
    if body is None:
        body = orjson.dumps(build_spec(current_app).to_dict())
        current_app.extensions[_EXTENSION] = body
    return Response(body, mimetype=JSON)


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

# Response headers: component id -> (header name, marshmallow field, description, required).
_HEADERS: dict[str, tuple[str, fields.Field, str, bool]] = {
    "RequestId": (
        "X-Request-ID",
        fields.String(validate=validate.Regexp(_REQUEST_ID_RE)),
        "The request's X-Request-ID when it was a valid one, else a generated one.",
        True,
    ),
    "Location": ("Location", fields.String(), "Where the created thing can be read.", True),
    "WwwAuthenticate": ("WWW-Authenticate", fields.String(), "Bearer, with a realm.", True),
    "RetryAfter": (
        "Retry-After",
        fields.Integer(validate=validate.Range(min=0)),
        "Seconds to wait before retrying.",
        True,
    ),
    "RetryAfterOptional": (
        "Retry-After",
        fields.Integer(validate=validate.Range(min=0)),
        "Seconds to wait before retrying, when known.",
        False,
    ),
    "TotalCount": (
        "X-Total-Count",
        fields.Integer(validate=validate.Range(min=0)),
        "With a stream (NDJSON or CSV): how many items it holds.",
        False,
    ),
    "ContentDisposition": (
        "Content-Disposition",
        fields.String(),
        "With a CSV stream: attachment, with a file name (<batch_id>-<list>.csv).",
        False,
    ),
    "PreferenceApplied": (
        "Preference-Applied",
        fields.String(validate=validate.OneOf(["respond-async"])),
        "Sent when 'Prefer: respond-async' was honoured.",
        False,
    ),
    "IdempotentReplayed": (
        "Idempotent-Replayed",
        fields.String(validate=validate.OneOf(["true"])),
        "Sent when this is the stored answer to an earlier request with the same Idempotency-Key.",
        False,
    ),
}
_HEADER_NAMES = {component_id: spec[0] for component_id, spec in _HEADERS.items()}


def _response(description: str, schema: Any = None, headers: tuple[str, ...] = ()) -> dict:
    """A response object; ``headers`` are ids of :data:`_HEADERS` (X-Request-ID is always)."""
    response: dict[str, Any] = {
        "description": description,
        "headers": {_HEADER_NAMES[h]: h for h in ("RequestId", *headers)},
    }
    if schema is not None:
        response["content"] = {JSON: {"schema": schema}}
    return response


def _error(description: str, headers: tuple[str, ...] = ()) -> dict:
    return _response(description, schemas.ErrorSchema, headers)


def _shared_responses() -> dict[str, dict[str, Any]]:
    """Error responses many operations share (components/responses)."""
    return {
        "Unauthorized": _error(
            "`invalid_api_key`: no, malformed, unknown or revoked API key.", ("WwwAuthenticate",)
        ),
        "Unavailable": _error(
            "`unavailable`: the database or the broker is unavailable; nothing was accepted.",
            ("RetryAfter",),
        ),
        "InvalidParameter": _error(
            "`invalid_parameter`: a path or query parameter is not valid (or holds a NUL "
            "character, which no id, slug or stored value does)."
        ),
        "UnsupportedMediaType": _error(
            "`unsupported_media_type`: a media type, charset or Content-Encoding this "
            "operation does not take."
        ),
        "PayloadTooLarge": _error("`payload_too_large`: the body is over IMPORTER_MAX_BODY_BYTES."),
        "RateLimited": _error(
            "`rate_limited`: the org is over IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND (or, for "
            "an import, IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE); nothing was done. Retry "
            "after `Retry-After` seconds.",
            ("RetryAfter",),
        ),
    }


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    parameters: tuple[Any, ...] = (),
    headers: type[Schema] = schemas.RequestHeadersSchema,
    body: Any = None,
    body_example: Any = None,
    other_bodies: dict[str, dict[str, Any]] | None = None,
    description: str | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [*parameters, {"in": "header", "schema": headers}],
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if body is not None:
        media: dict[str, Any] = {"schema": body}
        if body_example is not None:
            media["example"] = body_example
        content = {JSON: media, **(other_bodies or {})}
        operation["requestBody"] = {"required": True, "content": content}
    if secured:
        operation["security"] = [{BEARER: []}]
        responses.setdefault("401", "Unauthorized")
        responses.setdefault("429", "RateLimited")
        responses.setdefault("503", "Unavailable")
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _path(schema: type[Schema]) -> dict[str, Any]:
    return {"in": "path", "schema": schema}


def _query(schema: type[Schema]) -> dict[str, Any]:
    return {"in": "query", "schema": schema}


_REPORT_EXAMPLE = {
    "slug": "supplier-feed",
    "report_name": "Supplier feed",
    "base_object": "vendor",
    "mapping": {"external_id": "Supplier ID", "name": "Supplier Name", "website": "Website"},
    "required": ["website"],
}
_IMPORT_EXAMPLE = {
    "data": [
        {
            "Supplier ID": "V-001",
            "Supplier Name": "Acme Cloud",
            "Website": "acme.example.com",
            "IRQ Score": "72",
        },
        {"Supplier ID": "V-002", "Supplier Name": "", "IRQ Score": "high"},
        {"Supplier ID": "V-003", "Supplier Name": "Initech", "Region": "EMEA"},
    ]
}


def _operations(settings: Settings, converter: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Flask endpoint -> {method: OpenAPI operation}; ``converter`` turns a marshmallow
    field into a schema object (for the bodies that are not JSON objects)."""
    text_bodies = {
        media_type: {"schema": converter.field2property(field)}
        for media_types, field in (
            (NDJSON_TYPES, schemas.NDJSON_RECORDS),
            (CSV_TYPES, schemas.CSV_RECORDS),
        )
        for media_type in media_types
    }
    not_found_report = _error("`report_not_found`: no live report of that slug in the org.")
    not_found_batch = _error("`batch_not_found`: no batch of that id in the org.")
    body_422 = (
        "`invalid_body`: the body is not a valid JSON object of this shape, or holds a NUL "
        "character or a lone surrogate"
    )
    errors_field = (
        "`detail.errors` lists each problem with its `field`: the path of the value in the "
        "body, such as `mapping.website`"
    )
    report_422 = _error(
        f"{body_422}; `invalid_mapping`: the mapping does not fit the field catalog "
        f"({errors_field}); `invalid_parameter`: the slug in the path holds a NUL character."
    )
    slug_taken = _error("`slug_taken`: the org already has a live report with this slug.")
    batch_response = "The batch, done: {} (or, in a dry run, would be), with each record's outcome."
    page = _query(schemas.PageQuerySchema)

    ops: dict[str, dict[str, dict[str, Any]]] = {
        "api.create_report": {
            "post": _operation(
                "create_report",
                "Create an import report",
                "Import reports",
                {
                    "201": _response("The report.", schemas.ReportSchema, ("Location",)),
                    "409": slug_taken,
                    "413": "PayloadTooLarge",
                    "415": "UnsupportedMediaType",
                    "422": report_422,
                },
                headers=schemas.BodyHeadersSchema,
                body=schemas.ReportCreateSchema,
                body_example=_REPORT_EXAMPLE,
            )
        },
        "api.list_reports": {
            "get": _operation(
                "list_reports",
                "List the org's live reports, by slug",
                "Import reports",
                {
                    "200": _response("A page of reports.", schemas.ReportPageSchema),
                    "422": "InvalidParameter",
                },
                parameters=(page,),
            )
        },
        "api.get_report": {
            "get": _operation(
                "get_report",
                "Read a report",
                "Import reports",
                {
                    "200": _response("The report.", schemas.ReportSchema),
                    "404": not_found_report,
                    "422": "InvalidParameter",
                },
                parameters=(_path(schemas.SlugPathSchema),),
            )
        },
        "api.update_report": {
            "patch": _operation(
                "update_report",
                "Change a report's name, slug, mapping or required fields",
                "Import reports",
                {
                    "200": _response("The report as changed.", schemas.ReportSchema),
                    "404": not_found_report,
                    "409": slug_taken,
                    "413": "PayloadTooLarge",
                    "415": "UnsupportedMediaType",
                    "422": report_422,
                },
                parameters=(_path(schemas.SlugPathSchema),),
                headers=schemas.BodyHeadersSchema,
                body=schemas.ReportUpdateSchema,
                description="`version` goes up when `mapping` or `required` changes.",
            )
        },
        "api.archive_report": {
            "delete": _operation(
                "archive_report",
                "Archive a report (its slug becomes free)",
                "Import reports",
                {
                    "204": _response("Archived."),
                    "404": not_found_report,
                    "422": "InvalidParameter",
                },
                parameters=(_path(schemas.SlugPathSchema),),
            )
        },
        "api.import_records": {
            "post": _operation(
                "import_records",
                "Import a batch of records through a report",
                "Imports",
                {
                    "200": _response(
                        batch_response.format("at least one record was written"),
                        schemas.BatchSchema,
                        ("IdempotentReplayed",),
                    ),
                    "202": _response(
                        "Accepted and still running (over IMPORTER_SYNC_MAX_RECORDS records, "
                        "'Prefer: respond-async', the workers took longer than "
                        "IMPORTER_SYNC_WAIT_SECONDS, or, with Retry-After, every waiting slot "
                        "of the web process was taken: IMPORTER_SYNC_WAITERS): poll the "
                        "Location.",
                        schemas.BatchSchema,
                        (
                            "Location",
                            "PreferenceApplied",
                            "IdempotentReplayed",
                            "RetryAfterOptional",
                        ),
                    ),
                    "400": _response(
                        batch_response.format("no record was written"),
                        schemas.BatchSchema,
                        ("PreferenceApplied", "IdempotentReplayed"),
                    ),
                    "404": not_found_report,
                    "409": _error(
                        "`request_in_progress`: a request with this Idempotency-Key is "
                        "still being accepted.",
                        ("RetryAfterOptional",),
                    ),
                    "413": _error(
                        "`payload_too_large`: the body is over IMPORTER_MAX_BODY_BYTES; "
                        "`too_many_records`: more than IMPORTER_MAX_RECORDS records; "
                        "`batch_over_rate_limit`: more records than the org may import per "
                        "minute (IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE), so the batch could "
                        "never pass: split it."
                    ),
                    "429": _error(
                        "`rate_limited`: the org is over IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND, "
                        "or this batch's records do not fit in what is left of "
                        "IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE; nothing was accepted. Retry "
                        "after `Retry-After` seconds.",
                        ("RetryAfter",),
                    ),
                    "415": _error(
                        "`unsupported_media_type`: not JSON, NDJSON or CSV, not UTF-8, or a "
                        "Content-Encoding other than gzip."
                    ),
                    "422": _error(
                        "`invalid_body`: not valid JSON (a non-empty `data` array of objects), "
                        "NDJSON or CSV, not UTF-8, or not valid gzip; `invalid_parameter`: "
                        "`dry_run` is not a boolean, or a parameter holds a NUL character; "
                        "`invalid_idempotency_key`; "
                        "`idempotency_key_reused`: the key was used with a different request."
                    ),
                },
                parameters=(_path(schemas.SlugPathSchema), _query(schemas.ImportQuerySchema)),
                headers=schemas.ImportHeadersSchema,
                body=schemas.import_request_schema(settings.max_records),
                body_example=_IMPORT_EXAMPLE,
                other_bodies=text_bodies,
                description=(
                    'Records come as JSON (`{"data": [record, ...]}`), NDJSON or CSV, keyed '
                    "by the report's incoming names. Each is validated, then the valid ones are "
                    "created or updated by `external_id` (with `?dry_run=true`: only reported). "
                    "A record's problems are in `errors` (the record failed) and `warnings` "
                    "(it did not), each naming its `index`. A batch of at most "
                    "IMPORTER_SYNC_MAX_RECORDS records is validated before the answer; a larger "
                    "one is answered 202 at once and validated by the workers."
                ),
            )
        },
        "api.list_batches": {
            "get": _operation(
                "list_batches",
                "List the org's batches, newest first",
                "Batches",
                {
                    "200": _response(
                        "A page of batches, without their per-record lists.",
                        schemas.BatchSummaryPageSchema,
                    ),
                    "422": "InvalidParameter",
                },
                parameters=(_query(schemas.BatchListQuerySchema),),
            )
        },
        "api.get_batch": {
            "get": _operation(
                "get_batch",
                "Read a batch (optionally long-polling until it is done)",
                "Batches",
                {
                    "200": _response(
                        "The batch. With `?wait=N` it is answered once the batch is done or "
                        "the wait ran out, or at once, with Retry-After, when every waiting "
                        "slot of the web process is taken (IMPORTER_SYNC_WAITERS).",
                        schemas.BatchSchema,
                        ("RetryAfterOptional",),
                    ),
                    "404": not_found_batch,
                    "422": "InvalidParameter",
                },
                parameters=(
                    _path(schemas.BatchPathSchema),
                    _query(schemas.batch_wait_query_schema(int(settings.sync_wait_seconds))),
                ),
            )
        },
    }
    details_expired = _error(
        "`batch_details_expired`: the batch's per-record details were deleted "
        "IMPORTER_BATCH_DETAIL_RETENTION_DAYS after it finished; its summary is still there."
    )
    for kind, item_page in (
        ("results", schemas.ResultItemPageSchema),
        ("errors", schemas.ProblemItemPageSchema),
        ("warnings", schemas.ProblemItemPageSchema),
    ):
        listed = _response(
            f"A page of the batch's {kind} (JSON, the default), or all of them in one "
            "stream (`Accept: application/x-ndjson` or `text/csv`).",
            item_page,
            ("TotalCount", "ContentDisposition"),
        )
        listed["content"].update(
            {
                media: {"schema": converter.field2property(schemas.OUTCOME_STREAMS[kind][fmt])}
                for media, fmt in ((NDJSON_STREAM, "ndjson"), (CSV_STREAM, "csv"))
            }
        )
        ops[f"api.batch_{kind}"] = {
            "get": _operation(
                f"batch_{kind}",
                f"List a batch's {kind}, by record index",
                "Batches",
                {
                    "200": listed,
                    "404": not_found_batch,
                    "409": _error(
                        "`batch_not_done`: a stream (NDJSON or CSV) was asked for while the "
                        "batch is still queued or processing; wait for it "
                        "(`GET /v1/import/batches/{batch_id}?wait=N`).",
                        ("RetryAfter",),
                    ),
                    "410": details_expired,
                    "422": "InvalidParameter",
                },
                parameters=(_path(schemas.BatchPathSchema), page),
                description=(
                    f"JSON pages by default (`limit`, `offset`). With `Accept: "
                    f"application/x-ndjson` or `Accept: text/csv`, every one of the batch's "
                    f"{kind} in one streamed response, in index order (`limit` and `offset` "
                    "do not apply; `X-Total-Count` says how many), once the batch is done."
                ),
            )
        }
    not_found_webhook = _error("`webhook_not_found`: no live webhook of that id in the org.")
    webhook_path = _path(schemas.WebhookPathSchema)
    ops["api.create_webhook"] = {
        "post": _operation(
            "create_webhook",
            "Register a webhook endpoint",
            "Webhooks",
            {
                "201": _response(
                    "The endpoint (without its secret).", schemas.WebhookSchema, ("Location",)
                ),
                "413": "PayloadTooLarge",
                "415": "UnsupportedMediaType",
                "422": _error(
                    f"{body_422}; the URL is not an absolute http(s) URL, an event is "
                    f"unknown, or the secret is too short ({errors_field}); "
                    "`invalid_webhook_url`: the URL's address, or every "
                    "address its name resolves to, is not public (loopback, private, "
                    "link-local, carrier-grade NAT, multicast, unspecified or reserved) and "
                    "not in a network the operator allows."
                ),
            },
            headers=schemas.BodyHeadersSchema,
            body=schemas.WebhookCreateSchema,
            body_example={
                "url": "https://example.com/hooks/importer",
                "events": ["Import.Completed", "Import.Failed"],
                "secret": "whsec-3b8f0c1e9a7d4f52",
            },
            description=(
                "When a batch of the org ends (not a dry run), each endpoint subscribed to "
                "its event gets a POST of `{event_id, event_type, occurred_at, data}` (`data`: "
                "the batch without its per-record lists), signed in `X-Importer-Signature: "
                "sha256=<HMAC-SHA256 of the raw body with the secret>`. Delivered at least "
                "once, retried with exponential backoff; dedupe on `event_id`. Only public "
                "addresses are reached: each attempt resolves the name again, connects to "
                "the address it checked, and never follows a redirect."
            ),
        )
    }
    ops["api.list_webhooks"] = {
        "get": _operation(
            "list_webhooks",
            "List the org's webhook endpoints, oldest first",
            "Webhooks",
            {
                "200": _response("A page of endpoints.", schemas.WebhookPageSchema),
                "422": "InvalidParameter",
            },
            parameters=(page,),
        )
    }
    ops["api.get_webhook"] = {
        "get": _operation(
            "get_webhook",
            "Read a webhook endpoint",
            "Webhooks",
            {
                "200": _response("The endpoint.", schemas.WebhookSchema),
                "404": not_found_webhook,
                "422": "InvalidParameter",
            },
            parameters=(webhook_path,),
        )
    }
    ops["api.disable_webhook"] = {
        "delete": _operation(
            "disable_webhook",
            "Disable a webhook endpoint",
            "Webhooks",
            {
                "204": _response("Disabled."),
                "404": not_found_webhook,
                "422": "InvalidParameter",
            },
            parameters=(webhook_path,),
            description="No new deliveries; its pending ones are given up, not attempted.",
        )
    }
    ops["api.webhook_deliveries"] = {
        "get": _operation(
            "webhook_deliveries",
            "List an endpoint's deliveries and their attempts, newest first",
            "Webhooks",
            {
                "200": _response("A page of deliveries.", schemas.WebhookDeliveryPageSchema),
                "404": not_found_webhook,
                "422": "InvalidParameter",
            },
            parameters=(webhook_path, page),
        )
    }
    for base in catalog.CATALOG.values():
        ops[f"api.list_{base.plural}"] = {
            "get": _operation(
                f"list_{base.plural}",
                f"List the org's {base.plural}, oldest first",
                "Base objects",
                {
                    "200": _response(
                        f"A page of {base.plural}.", schemas.OBJECT_PAGE_SCHEMAS[base.name]
                    ),
                    "422": "InvalidParameter",
                },
                parameters=(_query(schemas.ObjectListQuerySchema),),
            )
        }
        ops[f"api.get_{base.name}"] = {
            "get": _operation(
                f"get_{base.name}",
                f"Read a {base.name}",
                "Base objects",
                {
                    "200": _response(f"The {base.name}.", schemas.OBJECT_SCHEMAS[base.name]),
                    "404": _error(
                        f"`{base.name}_not_found`: no {base.name} of that id in the org."
                    ),
                    "422": "InvalidParameter",
                },
                parameters=(_path(schemas.object_path_schema(base)),),
            )
        }
    ops["health.healthz"] = {
        "get": _operation(
            "healthz",
            "The process is up",
            "Health",
            {"200": _response("Up.", schemas.HealthSchema)},
            secured=False,
        )
    }
    ops["health.readyz"] = {
        "get": _operation(
            "readyz",
            "The database and the broker answer",
            "Health",
            {
                "200": _response("Ready.", schemas.ReadinessSchema),
                "503": _response("Not ready: `checks` says what is not.", schemas.ReadinessSchema),
            },
            secured=False,
        )
    }
    ops["observability.metrics_view"] = {
        "get": _operation(
            "metrics",
            "Prometheus metrics of every web and worker process",
            "Health",
            {
                "200": {
                    "description": "The Prometheus text format.",
                    "headers": {"X-Request-ID": "RequestId"},
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _error(
                    "`invalid_metrics_token`: IMPORTER_METRICS_TOKEN is set and the request "
                    "did not send it as 'Authorization: Bearer <token>'.",
                    ("WwwAuthenticate",),
                ),
            },
            secured=False,
            description="No API key (it carries no org data); a bearer token only when "
            "IMPORTER_METRICS_TOKEN is set.",
        )
    }
    ops["openapi.openapi_json"] = {
        "get": _operation(
            "openapi",
            "This document",
            "Health",
            {"200": _response("The OpenAPI document.", schemas.OpenApiDocumentSchema)},
            secured=False,
        )
    }
    return ops


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


def build_spec(app: Flask) -> APISpec:
    """The API's OpenAPI document, for ``app`` (its URL map and settings)."""
    settings: Settings = app.config["SETTINGS"]
    marshmallow_plugin = MarshmallowPlugin()
    spec = APISpec(
        title="Bulk importer",
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[FlaskPlugin(), marshmallow_plugin],
        info={"description": _DESCRIPTION},
        tags=_TAGS,
    )
    converter = marshmallow_plugin.converter
    assert converter is not None  # set when the spec initialised the plugin
    converter.add_attribute_function(_dict_length)
    spec.components.security_scheme(
        BEARER,
        {"type": "http", "scheme": "bearer", "description": "An org's API key (ak_...)."},
    )
    for component_id, (_name, field, description, required) in _HEADERS.items():
        spec.components.header(
            component_id,
            {
                "description": description,
                "required": required,
                "schema": converter.field2property(field),
            },
        )
    for component_id, response in _shared_responses().items():
        spec.components.response(component_id, response)

    operations = _operations(settings, converter)
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        described = operations.get(rule.endpoint)
        if described is None:
            continue  # the test of the document names it
        methods = {method.lower() for method in rule.methods or ()} - {"head", "options"}
        spec.path(
            view=app.view_functions[rule.endpoint],
            app=app,
            operations={method: described[method] for method in sorted(methods & set(described))},
        )
    return spec


def document(app: Flask) -> bytes:
    """The document as committed in ``docs/openapi.json``: keys sorted, indented, so it
    is the same bytes on every run and a change to the API is a readable diff."""
    body = orjson.dumps(
        build_spec(app).to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    )
    return body + b"\n"


def main() -> None:
    """``python -m app.openapi``: the document of an app with the default settings, to
    stdout (``make openapi`` writes it to docs/openapi.json)."""
    import sys
    import tempfile

    from app import create_app

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"IMPORTER_DATA_DIR": folder})
        sys.stdout.buffer.write(document(create_app(settings)))


if __name__ == "__main__":
    main()
