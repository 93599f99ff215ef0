"""marshmallow schemas of the API's request and response bodies (other than records,
whose schemas are compiled per report by ``importer.validation``)."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.errors import InvalidBody
from importer.db import unix
from importer.models import ImportReport


class ReportCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(required=True, validate=validate.Length(min=1, max=100))
    report_name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    base_object = fields.String(required=True)
    mapping = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        validate=validate.Length(min=1),
    )
    required = fields.List(fields.String(), load_default=list)


class ReportUpdateSchema(Schema):
    class Meta:
        unknown = RAISE

    slug = fields.String(validate=validate.Length(min=1, max=100))
    report_name = fields.String(validate=validate.Length(min=1, max=255))
    mapping = fields.Dict(
        keys=fields.String(), values=fields.String(), validate=validate.Length(min=1)
    )
    required = fields.List(fields.String())


class ReportSchema(Schema):
    id = fields.String(dump_only=True)
    slug = fields.String()
    report_name = fields.String()
    base_object = fields.String()
    mapping = fields.Dict(keys=fields.String(), values=fields.String())
    required = fields.List(fields.String())
    version = fields.Integer(dump_only=True)
    created_at = fields.Function(lambda report: unix(report.created_at), dump_only=True)
    updated_at = fields.Function(lambda report: unix(report.updated_at), dump_only=True)


def load_body(schema: Schema, document: Any) -> dict[str, Any]:
    """Load a request body, turning marshmallow's complaints into one 422."""
    try:
        result: dict[str, Any] = schema.load(document)
        return result
    except ValidationError as error:
        problems = _flatten(error.messages)
        raise InvalidBody(
            "The body is not valid: "
            + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
            errors=problems,
        ) from None


def _flatten(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            problems.extend(_flatten(value, name))
    elif isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict | list):
                problems.extend(_flatten(message, prefix))
            else:
                problems.append({"field": prefix or "body", "message": str(message)})
    else:
        problems.append({"field": prefix or "body", "message": str(messages)})
    return problems


report_schema = ReportSchema()
report_create_schema = ReportCreateSchema()
report_update_schema = ReportUpdateSchema()


def dump_report(report: ImportReport) -> dict[str, Any]:
    result: dict[str, Any] = report_schema.dump(report)
    return result
