"""The blueprint every documented view is declared on: flask-smorest's, which keeps
what a view parses (``@bp.arguments``) and answers (``@bp.response``) next to its
code and writes the OpenAPI document from it, plus what this service adds:

- ``@bp.errors(ReportNotFound, ...)``: the :mod:`app.errors` classes a view raises;
  the document's error responses are written from them (status, code, meaning,
  headers). A view that parses arguments raises ``invalid_parameter`` or
  ``invalid_body`` without saying so; a blueprint's ``common_errors`` (the ``/v1``
  API's 401, 429 and 503) are added to each of its operations.
- ``@bp.answers(200, Schema)``: a body the view builds by hand (the import call, a
  batch, base objects: the schema's dump costs more than the body, see
  ``bench/schema_dump.py``), documented by its schema.
- ``@bp.path_parameters(Schema)`` and ``@bp.request_headers(Schema)``: the path and
  header parameters, documented (a path parameter is checked by the view's lookup,
  whose 404 names the thing not found).
- Every response says it sends ``X-Request-ID``; an operation's id is its endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import flask_smorest
from marshmallow import Schema, fields, validate

from app import REQUEST_ID_RE
from app.arguments import parser
from app.errors import ApiError, InvalidBody, InvalidParameter
from app.schemas import ErrorSchema, RequestHeadersSchema

BEARER = "bearerAuth"
JSON = "application/json"
#: The header component every response refers to (app.openapi.HEADERS).
REQUEST_ID = ("X-Request-ID", "RequestId")

_UNWRAP = re.compile(r"(?<!\n)\n(?!\n)")
F = TypeVar("F", bound=Callable[..., Any])
#: An error class, or one with a sentence on what it means for this operation.
Raised = type[ApiError] | tuple[type[ApiError], str]


def _store(key: str, value: Any) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        doc = dict(getattr(func, "_apidoc", {}))
        doc[key] = value
        func._apidoc = doc  # type: ignore[attr-defined]
        return func

    return decorator


def _explained(raised: Iterable[Raised]) -> list[tuple[type[ApiError], str]]:
    """Each error class with its sentence: the operation's own, else the class's."""
    return [item if isinstance(item, tuple) else (item, item.description) for item in raised]


def error_response(raised: Iterable[Raised]) -> dict[str, Any]:
    """One status's response object: each code with what it means."""
    sentences, headers = [], dict([REQUEST_ID])
    for cls, text in _explained(raised):
        sentences.append(f"`{cls.code}`: {text}")
        headers.update((HEADER_NAMES[component], component) for component in cls.sends)
    return {
        "description": " ".join(sentences),
        "content": {JSON: {"schema": ErrorSchema}},
        "headers": headers,
    }


#: The response headers operations refer to: component id -> (header name, marshmallow
#: field, description, always sent). ``ApiError.sends`` and :func:`sends` name them.
HEADERS: dict[str, tuple[str, fields.Field, str, bool]] = {
    "RequestId": (
        "X-Request-ID",
        fields.String(validate=validate.Regexp(REQUEST_ID_RE)),
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
HEADER_NAMES = {component: spec[0] for component, spec in HEADERS.items()}


def sends(*components: str) -> dict[str, str]:
    """A success response's ``headers``: header name -> component id."""
    return {HEADER_NAMES[component]: component for component in components}


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = parser

    def __init__(
        self,
        *args: Any,
        secured: bool = False,
        common_errors: tuple[type[ApiError], ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.secured = secured
        self.common_errors = common_errors
        self._prepare_doc_cbks.append(self._prepare_service_doc)

    # --- what a view declares -------------------------------------------------------

    @staticmethod
    def errors(*raised: Raised) -> Callable[[F], F]:
        return _store("errors", raised)

    @staticmethod
    def path_parameters(schema: type[Schema]) -> Callable[[F], F]:
        return _store("path_parameters", schema)

    @staticmethod
    def request_headers(schema: type[Schema]) -> Callable[[F], F]:
        return _store("request_headers", schema)

    def answers(self, status: int, schema: Any = None, **kwargs: Any) -> Callable[[F], F]:
        """A response whose body the view builds itself, documented by ``schema``."""
        decorator: Callable[[F], F] = self.alt_response(
            status, schema=schema, success=True, **kwargs
        )
        return decorator

    # --- the document -----------------------------------------------------------------

    def _store_endpoint_docs(self, endpoint: str, obj: Any, *args: Any, **kwargs: Any) -> None:
        super()._store_endpoint_docs(endpoint, obj, *args, **kwargs)
        for method, doc in self._docs[endpoint].items():
            if method != "parameters":
                doc["operation_id"] = endpoint
                # A docstring's description is Markdown: its line breaks are not breaks.
                if "description" in doc["docstring"]:
                    text = doc["docstring"]["description"]
                    doc["docstring"]["description"] = _UNWRAP.sub(" ", text)

    def _prepare_service_doc(
        self, doc: dict[str, Any], doc_info: dict[str, Any], **_: Any
    ) -> dict[str, Any]:
        parameters = doc.setdefault("parameters", [])
        if "path_parameters" in doc_info:
            parameters.insert(0, {"in": "path", "schema": doc_info["path_parameters"]})
        headers = doc_info.get("request_headers", RequestHeadersSchema)
        parameters.append({"in": "header", "schema": headers})
        doc["operationId"] = doc_info["operation_id"]

        raised = _explained(doc_info.get("errors", ()))
        # Parsed arguments: what is left of them are query parameters (a JSON body has
        # become the requestBody).
        implied: list[type[ApiError]] = [InvalidBody] if "requestBody" in doc else []
        if doc_info.get("arguments", {}).get("parameters"):
            implied.append(InvalidParameter)
        for cls in (*implied, *self.common_errors):
            if cls not in {declared for declared, _ in raised}:
                raised.append((cls, cls.description))
        if self.secured:
            doc["security"] = [{BEARER: []}]

        responses: dict[str, Any] = {
            str(status): response for status, response in doc.get("responses", {}).items()
        }
        by_status: dict[int, list[tuple[type[ApiError], str]]] = {}
        for cls, text in raised:
            by_status.setdefault(cls.status, []).append((cls, text))
        for status, items in by_status.items():
            (cls, text), *others = items
            # One code as it always reads: the shared component (app.openapi registers one
            # per class); several, or one with a sentence of its own: written out here.
            if not others and text == cls.description:
                responses[str(status)] = cls.__name__
            else:
                responses[str(status)] = error_response(items)
        for response in responses.values():
            if isinstance(response, dict):
                response.setdefault("headers", {}).update(dict([REQUEST_ID]))
        doc["responses"] = dict(sorted(responses.items()))
        return doc
