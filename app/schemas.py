"""marshmallow schemas of the API's query strings, request bodies and response bodies
(other than records, whose schemas are compiled per report by ``importer.validation``).

The views declare them (:mod:`app.blueprint`): query strings and report and webhook
bodies are loaded with them (:mod:`app.arguments`); reports, webhooks, deliveries and
health answers are dumped with them. The import call's answer, batches and base
objects are built by hand on the hot path (``bench/schema_dump.py`` measures why) and
described by their schemas, whose conformance test checks that the two agree.
Response schemas declare every key they always send as ``required`` (present, maybe
``null``); a key that is only sometimes there is not required.
"""

from __future__ import annotations

from typing import Any

from marshmallow import (
    INCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from app.arguments import QuerySchema
from app.extensions import services
from app.idempotency import MAX_KEY_LENGTH
from app.pagination import DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET
from importer import catalog, ids, webhooks
from importer.catalog import BaseObject, FieldSpec, Kind
from importer.db import unix
from importer.listing import COUNT_BOUND
from importer.models import BatchStatus, DeliveryStatus
from importer.problems import ErrorCode
from importer.reports import SLUG_RE

_SLUG_DESCRIPTION = (
    "1 to 100 characters of a-z, 0-9 and '-', not starting or ending with '-' "
    "('batches' is reserved)."
)


def _id_field(prefix: str, **kwargs: Any) -> fields.String:
    """An id of the form ``<prefix>_<32 hex>`` (``prefix`` may be a regex fragment)."""
    return fields.String(validate=validate.Regexp(rf"^{prefix}_[0-9a-f]{{32}}$"), **kwargs)


class UnixTime(fields.Integer):
    """A timestamp, dumped as integer Unix seconds."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> int | None:
        return unix(value)


# --- report bodies (loaded and dumped) ------------------------------------------


class ReportCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": _SLUG_DESCRIPTION, "pattern": SLUG_RE.pattern},
    )
    report_name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    base_object = fields.String(
        required=True,
        metadata={
            "description": "A base object of the field catalog.",
            "enum": list(catalog.CATALOG),
        },
    )
    mapping = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "Catalog field name -> the name the source system sends it as.",
        },
    )
    required = fields.List(
        fields.String(),
        load_default=list,
        metadata={
            "description": "Catalog fields a record must carry, on top of the base object's own."
        },
    )


class ReportUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(
        validate=validate.Length(min=1, max=100),
        metadata={"description": _SLUG_DESCRIPTION, "pattern": SLUG_RE.pattern},
    )
    report_name = fields.String(validate=validate.Length(min=1, max=255))
    mapping = fields.Dict(
        keys=fields.String(), values=fields.String(), validate=validate.Length(min=1)
    )
    required = fields.List(fields.String())


class ReportSchema(Schema):
    id = _id_field(ids.IMPORT_REPORT, dump_only=True, required=True)
    slug = fields.String(required=True)
    report_name = fields.String(required=True)
    base_object = fields.String(required=True)
    mapping = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    required = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Always includes the base object's own required fields."},
    )
    version = fields.Integer(
        dump_only=True,
        required=True,
        validate=validate.Range(min=1),
        metadata={"description": "Goes up on every change of mapping or required."},
    )
    created_at = UnixTime(dump_only=True, required=True)
    updated_at = UnixTime(dump_only=True, required=True)


# --- webhook bodies -------------------------------------------------------------


def _webhook_url(url: str) -> None:
    problem = webhooks.url_problem(url)
    if problem is not None:
        raise ValidationError(f"The URL {problem}.")


def _event_type(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.OneOf(webhooks.EVENT_TYPES), **kwargs)


class WebhookCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    url = fields.String(
        required=True,
        validate=_webhook_url,
        metadata={
            "description": "An absolute http:// or https:// URL; it is POSTed to, and "
            "redirects are not followed.",
            "maxLength": webhooks.MAX_URL_LENGTH,
            "example": "https://example.com/hooks/importer",
        },
    )
    events = fields.List(
        _event_type(),
        required=True,
        validate=validate.Length(min=1),
        metadata={"description": "The events to deliver.", "example": list(webhooks.EVENT_TYPES)},
    )
    secret = fields.String(
        required=True,
        validate=validate.Length(min=webhooks.MIN_SECRET_LENGTH, max=webhooks.MAX_SECRET_LENGTH),
        metadata={
            "description": "The key of the HMAC-SHA256 signature of every delivery "
            "(X-Importer-Signature); never shown again.",
            "example": "whsec-3b8f0c1e9a7d4f52",
        },
    )


class WebhookSchema(Schema):
    """An endpoint, as the API shows it (never its secret)."""

    id = _id_field(ids.WEBHOOK, required=True)
    url = fields.String(required=True)
    events = fields.List(_event_type(), required=True)
    created_at = UnixTime(required=True)


class DeliveryAttemptSchema(Schema):
    at = fields.Integer(required=True, metadata={"description": "When it was sent."})
    status_code = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The receiver's HTTP status; null when no answer came."},
    )
    error = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "Why no answer came (refused, timed out, ...), or null."},
    )
    duration_ms = fields.Integer(required=True, validate=validate.Range(min=0))


class WebhookDeliverySchema(Schema):
    id = _id_field(ids.DELIVERY, required=True)
    event_id = _id_field(
        ids.EVENT,
        required=True,
        metadata={"description": "The same for every endpoint and attempt: dedupe on it."},
    )
    event_type = _event_type(required=True)
    status = fields.String(
        required=True, validate=validate.OneOf([status.value for status in DeliveryStatus])
    )
    attempt_count = fields.Integer(required=True, validate=validate.Range(min=0))
    created_at = UnixTime(required=True)
    delivered_at = UnixTime(required=True, allow_none=True)
    next_attempt_at = UnixTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the next attempt is due; null once delivered or failed."},
    )
    attempts = fields.List(
        fields.Nested(DeliveryAttemptSchema),
        required=True,
        metadata={"description": "Every attempt, oldest first."},
    )


# --- documentation-only schemas: bodies the views build by hand -----------------


class FieldProblemSchema(Schema):
    field = fields.String(
        required=True,
        metadata={
            "description": "The path of the value in the body: a name, `mapping.<field>`, "
            "a list item numbered from 0 (`events.0`), or `body`.",
            "example": "mapping.website",
        },
    )
    message = fields.String(required=True)


class ErrorDetailSchema(Schema):
    code = fields.String(
        required=True,
        metadata={"description": "snake_case, stable", "example": "invalid_api_key"},
    )
    message = fields.String(required=True, metadata={"description": "A sentence for people."})
    errors = fields.List(
        fields.Nested(FieldProblemSchema),
        metadata={"description": "Each problem of an invalid_body or invalid_mapping."},
    )


class ErrorSchema(Schema):
    """The envelope of every request-level error."""

    detail = fields.Nested(ErrorDetailSchema, required=True)


class ImportRequestSchema(Schema):
    """``{"data": [record, ...]}``: documents the import call's JSON body, which is
    streamed record by record (:mod:`app.parsing`), never loaded whole."""

    data = fields.List(
        fields.Dict(),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": "The records (at most IMPORTER_MAX_RECORDS, 100,000 by default), "
            "each keyed by the report's incoming names."
        },
    )


#: The other bodies of the import call: records as text, one per line or row.
NDJSON_RECORDS = {
    "type": "string",
    "description": "One JSON object per line, keyed by the report's incoming names; "
    "a line that is not an object fails that record.",
    "example": '{"Supplier ID": "V-001", "Supplier Name": "Acme Cloud"}\n',
}
CSV_RECORDS = {
    "type": "string",
    "description": "A header row of incoming names, then one record per row; "
    "a row that cannot be read fails that record.",
    "example": "Supplier ID,Supplier Name\r\nV-001,Acme Cloud\r\n",
}


class ResultItemSchema(Schema):
    index = fields.Integer(required=True, validate=validate.Range(min=0))
    external_id = fields.String(required=True)
    coverbase_id = _id_field(
        "cb[a-z]+",
        required=True,
        allow_none=True,
        metadata={"description": "null in a dry run, for a record that would be created."},
    )
    action = fields.String(required=True, validate=validate.OneOf(["created", "updated"]))
    changed = fields.Boolean(
        required=True,
        metadata={
            "description": (
                "true when the record created the object or changed a stored value (and "
                "so its `updated_at`); false for an update that changed nothing: its "
                "values were those stored already, or a batch accepted later had already "
                "written the object (later wins). In a dry run: what the import would do."
            )
        },
    )
    status = fields.String(required=True, validate=validate.OneOf(["success"]))


class ProblemItemSchema(Schema):
    """An entry of a batch's errors or warnings."""

    index = fields.Integer(required=True, validate=validate.Range(min=0))
    external_id = fields.String(required=True, allow_none=True)
    field = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The incoming field name, or null."},
    )
    error_code = fields.String(
        required=True, validate=validate.OneOf([code.value for code in ErrorCode])
    )
    message = fields.String(required=True)


class ProgressSchema(Schema):
    processed = fields.Integer(required=True, validate=validate.Range(min=0))
    total = fields.Integer(required=True, validate=validate.Range(min=0))


class BatchLinksSchema(Schema):
    self_ = fields.String(required=True, data_key="self")
    results = fields.String(required=True)
    errors = fields.String(required=True)
    warnings = fields.String(required=True)


def _count() -> fields.Integer:
    return fields.Integer(required=True, validate=validate.Range(min=0))


class BatchSummarySchema(Schema):
    """A batch without its per-record lists (the items of the batch list)."""

    id = _id_field(ids.IMPORT_REPORT, required=True, metadata={"description": "The report's id."})
    slug = fields.String(required=True)
    report_name = fields.String(required=True)
    base_object = fields.String(required=True)
    mapping = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    report_version = fields.Integer(required=True, validate=validate.Range(min=1))
    batch_id = _id_field(ids.BATCH, required=True)
    dry_run = fields.Boolean(
        required=True, metadata={"description": "Validated and reported; nothing written."}
    )
    status = fields.String(
        required=True, validate=validate.OneOf([status.value for status in BatchStatus])
    )
    received_count = _count()
    created_count = _count()
    updated_count = _count()
    unchanged_count = fields.Integer(
        required=True,
        validate=validate.Range(min=0),
        metadata={
            "description": (
                "Of `updated_count`, the records that changed nothing (`changed: false`)."
            )
        },
    )
    failed_count = _count()
    received_at = fields.Integer(required=True)
    completed_at = fields.Integer(required=True, allow_none=True)
    progress = fields.Nested(ProgressSchema, required=True)
    results_total = _count()
    errors_total = _count()
    warnings_total = _count()
    details_purged_at = fields.Integer(
        required=True,
        allow_none=True,
        metadata={
            "description": "When the per-record details (results, errors, warnings) were "
            "deleted, IMPORTER_BATCH_DETAIL_RETENTION_DAYS after the batch finished: the lists "
            "are then empty and their endpoints answer 410 batch_details_expired; the counts "
            "stay. Null while they are kept."
        },
    )
    links = fields.Nested(BatchLinksSchema, required=True)


class BatchSchema(BatchSummarySchema):
    """The import response body, and the body of ``GET /v1/import/batches/{id}``:
    ``results``, ``errors`` and ``warnings`` hold the first ``IMPORTER_INLINE_ITEMS``
    entries each; ``*_total`` and ``links`` say where the rest is."""

    results = fields.List(fields.Nested(ResultItemSchema), required=True)
    errors = fields.List(fields.Nested(ProblemItemSchema), required=True)
    warnings = fields.List(fields.Nested(ProblemItemSchema), required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))


class ReadinessSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "unavailable"]))
    checks = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "'ok', or why the database or the broker is unavailable."},
    )


class OpenApiDocumentSchema(Schema):
    class Meta:
        unknown = INCLUDE

    openapi = fields.String(required=True)
    info = fields.Dict(required=True)
    paths = fields.Dict(required=True)


# --- base objects, generated from the catalog -----------------------------------


def _catalog_field(spec: FieldSpec) -> fields.Field:
    """The response field of one catalog field: present always, null when absent
    (unless the field is required)."""
    options: dict[str, Any] = {"required": True, "allow_none": not spec.required}
    match spec.kind:
        case Kind.NUMBER:
            return fields.Float(
                validate=validate.Range(min=spec.minimum, max=spec.maximum), **options
            )
        case Kind.BOOLEAN:
            return fields.Boolean(**options)
        case Kind.DATE:
            return fields.Integer(
                metadata={"description": "A date, as the Unix seconds of its midnight UTC."},
                **options,
            )
        case Kind.STRING_LIST:
            return fields.List(fields.String(), **options)
        case Kind.CHOICE if spec.choices:
            return fields.String(validate=validate.OneOf(spec.choices), **options)
        case Kind.CHOICE:
            return fields.String(
                metadata={"description": f"One of the org's {spec.org_choices}."}, **options
            )
        case _:
            return fields.String(validate=validate.Length(max=spec.max_length), **options)


def object_schema(base: BaseObject) -> type[Schema]:
    """The body of one ``base`` object: ``id``, every catalog field (and, for a
    reference, its ``<object>_id``), ``created_at`` and ``updated_at``."""
    declared: dict[str, fields.Field] = {"id": _id_field(base.id_prefix, required=True)}
    for spec in base.fields:
        declared[spec.name] = _catalog_field(spec)
        if spec.references and spec.reference_column:
            target = catalog.CATALOG[spec.references]
            declared[spec.reference_column] = _id_field(
                target.id_prefix, required=True, allow_none=not spec.required
            )
    declared["created_at"] = fields.Integer(required=True)
    declared["updated_at"] = fields.Integer(required=True)
    return Schema.from_dict(declared, name=f"{base.name.title()}Schema")


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """``{items, total, total_is_lower_bound, limit, offset, next_cursor}``: one page."""
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "total": fields.Integer(
                required=True,
                validate=validate.Range(min=0),
                metadata={
                    "description": f"Items in the list; exact, or, when total_is_lower_bound, "
                    f"at least this many ({COUNT_BOUND:,}: larger lists are not counted)."
                },
            ),
            "total_is_lower_bound": fields.Boolean(required=True),
            "limit": fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_LIMIT)),
            "offset": fields.Integer(
                required=True,
                validate=validate.Range(min=0),
                metadata={"description": "Position of the page's first item in the list."},
            ),
            "next_cursor": fields.String(
                required=True,
                allow_none=True,
                metadata={
                    "description": "Pass as ?cursor= for the next page (same filters); "
                    "null on the last page."
                },
            ),
        },
        name=name,
    )


ReportPageSchema = page_schema(ReportSchema, "ReportPageSchema")
BatchSummaryPageSchema = page_schema(BatchSummarySchema, "BatchSummaryPageSchema")
#: The bodies of a batch's lists streamed whole (``Accept: application/x-ndjson`` or
#: ``text/csv``), by kind.
OUTCOME_STREAMS = {
    kind: {
        "ndjson": {
            "type": "string",
            "description": f"Every one of the batch's {kind}, in index order: one JSON "
            f"object per line, each an item of the JSON pages ({item}).",
        },
        "csv": {
            "type": "string",
            "description": f"Every one of the batch's {kind}, in index order: a header "
            f"row ({', '.join(columns)}, or the `fields` asked for), then one row per "
            "item. A cell that a spreadsheet would run as a formula (starting with = + - @ "
            "| % , a tab or a carriage return; a number excepted) is written with a "
            "leading '.",
            "example": example,
        },
    }
    for kind, item, columns, example in (
        (
            "results",
            "ResultItem",
            ("index", "external_id", "coverbase_id", "action", "changed", "status"),
            "index,external_id,coverbase_id,action,changed,status\r\n"
            "0,V-001,cbvndr_0190f6a1c2d34e5f8a9b0c1d2e3f4a5b,created,true,success\r\n",
        ),
        (
            "errors",
            "ProblemItem",
            ("index", "external_id", "field", "error_code", "message"),
            "index,external_id,field,error_code,message\r\n"
            "3,V-004,Website,invalid_field_value,Not a valid URL.\r\n",
        ),
        (
            "warnings",
            "ProblemItem",
            ("index", "external_id", "field", "error_code", "message"),
            "index,external_id,field,error_code,message\r\n",
        ),
    )
}

ResultItemPageSchema = page_schema(ResultItemSchema, "ResultItemPageSchema")
ProblemItemPageSchema = page_schema(ProblemItemSchema, "ProblemItemPageSchema")
WebhookPageSchema = page_schema(WebhookSchema, "WebhookPageSchema")
WebhookDeliveryPageSchema = page_schema(WebhookDeliverySchema, "WebhookDeliveryPageSchema")

#: Base object name -> the schema of its body, and of a page of them.
OBJECT_SCHEMAS: dict[str, type[Schema]] = {
    base.name: object_schema(base) for base in catalog.CATALOG.values()
}
OBJECT_PAGE_SCHEMAS: dict[str, type[Schema]] = {
    name: page_schema(schema, f"{name.title()}PageSchema")
    for name, schema in OBJECT_SCHEMAS.items()
}


# --- parameters (query, header, path) -------------------------------------------


class PageQuerySchema(QuerySchema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT)
    )
    offset = fields.Integer(
        load_default=0,
        validate=[
            validate.Range(min=0),
            validate.Range(
                max=MAX_OFFSET,
                error="Must be at most {max}: to read deeper, follow 'cursor' (each page's "
                "next_cursor), which costs the same at any depth.",
            ),
        ],
        metadata={"description": "Items to skip; deeper pages are read with cursor."},
    )
    cursor = fields.String(
        metadata={
            "description": "The next_cursor of the previous page, unchanged, with the same "
            "filters (instead of offset): continues the list at any depth for the cost of "
            "its first page. Any other value is 422 invalid_parameter."
        }
    )

    @validates_schema(pass_original=True)
    def _offset_or_cursor(self, data: dict[str, Any], original: Any, **_: Any) -> None:
        if data.get("cursor") and original.get("offset"):
            raise ValidationError(
                "Give either 'offset' or 'cursor', not both: the cursor knows its position."
            )


class ItemFieldNames(fields.Field[tuple[str, ...]]):
    """A comma-separated list of item field names, each one of ``names`` and named once:
    loaded as a tuple, in the order given."""

    def __init__(self, names: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = names

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[str, ...]:
        if not isinstance(value, str):
            raise ValidationError("Not a comma-separated list of field names.")
        chosen = tuple(part.strip() for part in value.split(","))
        unknown = [name for name in chosen if name not in self.names]
        if unknown:
            raise ValidationError(
                f"No item field {unknown[0]!r}: name some of {', '.join(self.names)}, "
                "separated by commas."
            )
        if len(set(chosen)) < len(chosen):
            raise ValidationError("Name each field once.")
        return chosen


def outcome_query_schema(kind: str, names: tuple[str, ...]) -> type[PageQuerySchema]:
    """The query string of ``GET /v1/import/batches/{id}/<kind>``: a page, or the fields
    of a stream."""
    item_fields = ItemFieldNames(
        names,
        data_key="fields",
        metadata={
            "type": "string",
            "description": f"Streams only (NDJSON, CSV): the fields of each item, in this "
            f"order, as a comma-separated list of {', '.join(names)} (default: all, in "
            "that order)."
            + (
                " A results stream without external_id costs less: the service reads "
                "each result's external_id from its object."
                if kind == "results"
                else ""
            ),
        },
    )
    return type(f"{kind.title()}QuerySchema", (PageQuerySchema,), {"item_fields": item_fields})


class BatchListQuerySchema(PageQuerySchema):
    status = fields.Enum(
        BatchStatus,
        by_value=True,
        metadata={"description": "Only the batches in this status."},
    )
    slug = fields.String(metadata={"description": "Only the batches of this report slug."})


class BatchWaitQuerySchema(QuerySchema):
    wait = fields.Integer(
        load_default=0,
        validate=validate.Range(min=0),
        metadata={
            "description": "Seconds to long-poll until the batch is done (at most "
            "IMPORTER_SYNC_WAIT_SECONDS, 25 by default)."
        },
    )

    inline = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0),
        metadata={
            "description": "At most this many `results`, `errors` and `warnings` each in the "
            "body (at most IMPORTER_INLINE_ITEMS, 1,000 by default, which is also the "
            "default); the `*_total` counts are always there. A client that reads the "
            "lists from their own endpoints (a long-poll for the status alone, say) asks "
            "for 0."
        },
    )

    @validates("wait")
    def _at_most_the_synchronous_wait(self, value: int, **_: Any) -> None:
        longest = int(services().settings.sync_wait_seconds)
        if value > longest:
            raise ValidationError(f"Must be at most {longest} (IMPORTER_SYNC_WAIT_SECONDS).")

    @validates("inline")
    def _at_most_the_inline_items(self, value: int | None, **_: Any) -> None:
        most = services().settings.inline_items
        if value is not None and value > most:
            raise ValidationError(f"Must be at most {most} (IMPORTER_INLINE_ITEMS).")


class ObjectListQuerySchema(PageQuerySchema):
    external_id = fields.String(metadata={"description": "Only the object with this external_id."})
    updated_since = fields.Integer(
        validate=validate.Range(min=0, max=253402300799),
        metadata={"description": "Only objects updated at or after these Unix seconds."},
    )


class RequestHeadersSchema(Schema):
    # Any value is accepted: one that does not fit is replaced, not refused (app/__init__.py).
    request_id = fields.String(
        data_key="X-Request-ID",
        metadata={
            "description": "Echoed on the response when it is 1 to 64 characters of "
            "A-Z, a-z, 0-9, '.', '_', ':' and '-'; any other value (or none) is replaced by "
            "a generated id."
        },
    )


class ImportQuerySchema(QuerySchema):
    dry_run = fields.Boolean(
        load_default=False,
        truthy={"true", "1", "yes"},
        falsy={"false", "0", "no"},
        metadata={
            "description": "Validate and report what would happen (`action`, counts, "
            "errors); create or change nothing. Also yes/no, 1/0."
        },
    )


class BodyHeadersSchema(RequestHeadersSchema):
    content_encoding = fields.String(
        data_key="Content-Encoding",
        validate=validate.OneOf(["gzip", "identity"]),
        metadata={"description": "A gzip body is decompressed (within the body limit)."},
    )


class ImportHeadersSchema(BodyHeadersSchema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=[
            validate.Length(min=1, max=MAX_KEY_LENGTH),
            validate.Regexp(r"^[ -~]+$"),
        ],
        metadata={
            "description": "Makes a retry safe: a repeat of the same request within the "
            "retention period gets the original answer (Idempotent-Replayed: true).",
            "example": "import-2026-01-31-0001",
        },
    )
    prefer = fields.String(
        data_key="Prefer",
        metadata={
            "description": "'respond-async' answers 202 at once (Preference-Applied).",
            "example": "respond-async",
        },
    )


class SlugPathSchema(Schema):
    slug = fields.String(
        required=True,
        validate=validate.Regexp(SLUG_RE.pattern),
        metadata={"description": "The report's slug.", "example": "vendors"},
    )


class BatchPathSchema(Schema):
    batch_id = _id_field(
        ids.BATCH,
        required=True,
        metadata={"example": "cbbatch_84fb5309885f4995af608779bdf08e81"},
    )


class WebhookPathSchema(Schema):
    webhook_id = _id_field(
        ids.WEBHOOK,
        required=True,
        metadata={"example": "cbwhk_0f3c2b1a9e8d4c7b6a5f4e3d2c1b0a99"},
    )


def object_path_schema(base: BaseObject) -> type[Schema]:
    return Schema.from_dict(
        {"object_id": _id_field(base.id_prefix, required=True)},
        name=f"{base.name.title()}PathSchema",
    )
