"""Where a request's query string and small JSON bodies are parsed: by the marshmallow
schema each view declares (``@api.arguments(Schema, location=...)``), through webargs.

A value that does not fit is answered in the one error envelope
(:mod:`app.errors`): ``422 invalid_parameter`` for the query string, naming the
parameter; ``422 invalid_body`` for a JSON body, with ``detail.errors`` listing each
problem by its path in the body (``mapping.website``, ``events.0``). A JSON body is
read by :func:`app.parsing.json_body` first: its media type, size, encoding and text
(no NUL character or lone surrogate) are checked there.

The import call's records are not read here: they are streamed and validated record by
record (:mod:`app.parsing`, :mod:`importer.validation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load
from webargs.flaskparser import FlaskParser

from app.errors import InvalidBody, InvalidParameter
from app.extensions import services
from app.parsing import json_body


class QuerySchema(Schema):
    """The base of every query string's schema: unknown parameters are ignored; a number,
    boolean or choice is read without its surrounding spaces (a boolean in any case),
    and an empty one (``?limit=``) is as good as absent. Text is taken as sent."""

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _normalise(self, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        normalised: dict[str, Any] = {}
        for name, value in data.items():
            field = self.fields.get(name)
            if (
                isinstance(value, str)
                and field is not None
                and not isinstance(field, fields.String)
            ):
                value = value.strip()
                if value == "":
                    continue
                if isinstance(field, fields.Boolean):
                    value = value.lower()
            normalised[name] = value
        return normalised


def body_problems(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """marshmallow's nested messages as ``[{field, message}]``, each ``field`` the path
    of the value in the body (``body`` for the body as a whole)."""
    problems: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            problems.extend(body_problems(value, name))
    elif isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict | list):
                problems.extend(body_problems(message, prefix))
            else:
                problems.append({"field": prefix or "body", "message": str(message)})
    else:
        problems.append({"field": prefix or "body", "message": str(messages)})
    return problems


def _parameter_message(messages: Any) -> str:
    sentences = []
    for problem in body_problems(messages):
        name, message = problem["field"], problem["message"].rstrip(".")
        if name in ("_schema", "body"):
            sentences.append(f"{message}.")
        else:
            sentences.append(f"Query parameter {name!r}: {message}.")
    return " ".join(sentences)


class Parser(FlaskParser):
    """webargs' Flask parser, answering in the service's envelope."""

    DEFAULT_VALIDATION_STATUS = 422

    def load_json(self, req: Request, schema: Schema) -> Any:
        return json_body(services().settings)

    def handle_error(
        self,
        error: ValidationError,
        req: Request,
        schema: Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        messages = error.messages
        location, found = next(iter(messages.items())) if isinstance(messages, dict) else ("", {})
        if location == "json":
            problems = body_problems(found)
            raise InvalidBody(
                "The body is not valid: "
                + "; ".join(f"{p['field']}: {p['message']}" for p in problems),
                errors=problems,
            )
        raise InvalidParameter(_parameter_message(found))


parser = Parser()
