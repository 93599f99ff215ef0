"""One guard for the text a request brings in: its path parameters, its query
parameters and its JSON body.

PostgreSQL text cannot hold a NUL character (U+0000), and a lone UTF-16 surrogate
(U+D800 to U+DFFF, which only a JSON ``\\uXXXX`` escape can carry) is not a character
at all: either one in a lookup or a stored value makes the database driver fail. Both
are refused here, before anything is looked up or stored, with a 422 that says where:
``invalid_parameter`` for a path or query parameter, ``invalid_body`` for a JSON body.
Inside the records of an import they fail only their record (:mod:`importer.fields`,
:mod:`importer.formats`).

The one header whose text is looked up, ``Idempotency-Key``, must be printable ASCII
(:func:`app.idempotency.check_key`); an API key is only ever looked up by its digest.
"""

from __future__ import annotations

import re
from typing import Any

from flask import request

from app.errors import InvalidBody, InvalidParameter

#: What no stored or looked-up text may hold.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def describe(character: str) -> str:
    """``a NUL character (\\u0000)`` or ``a lone surrogate (\\ud800)``."""
    escape = f"\\u{ord(character):04x}"
    return f"a NUL character ({escape})" if character == "\x00" else f"a lone surrogate ({escape})"


def _found(text: str) -> str | None:
    match = UNSTORABLE.search(text)
    return describe(match.group()) if match else None


def check_parameters() -> None:
    """The matched URL's path parameters and every query parameter: a ``before_request``
    of each blueprint whose views look things up (the ``/v1`` API, the ops page), run
    after its authentication (so a request without a key still gets its 401, and a
    disabled ops page its 404). A URL that matches no rule is left to its 404 or 405."""
    if request.routing_exception is not None:
        return
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and (what := _found(value)):
            raise InvalidParameter(
                f"Path parameter {name!r} holds {what}; no {name} does. Check the URL."
            )
    for name, value in request.args.items(multi=True):
        what = _found(name) or _found(value)
        if what:
            raise InvalidParameter(
                f"Query parameter {name!r} holds {what}, which the service cannot look up."
            )


def check_document(document: Any) -> None:
    """A parsed JSON body: every key and string, however deep. The 422 names the path
    of one it finds (``mapping.website``, ``events.0``), as ``detail.errors`` does for
    any invalid body."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if what := _found(value):
                _refuse(path or "body", f"holds {what}")
        elif isinstance(value, dict):
            for key, item in value.items():
                if what := _found(key):
                    _refuse(path or "body", f"has a key holding {what}")
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend(
                (f"{path}.{index}" if path else str(index), item)
                for index, item in enumerate(value)
            )


def _refuse(field: str, problem: str) -> None:
    message = f"{problem}, which the service cannot store"
    raise InvalidBody(
        f"The body is not valid: {field}: {message}.",
        errors=[{"field": field, "message": message[0].upper() + message[1:] + "."}],
    )
