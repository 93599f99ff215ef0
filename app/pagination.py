"""``?limit=`` and ``?offset=`` for every list, and the ``{items, total, limit, offset}`` body."""

from __future__ import annotations

from typing import Any

from flask import request

from app.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class InvalidParameter(ApiError):
    status = 422
    code = "invalid_parameter"


def int_arg(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParameter(
            f"Query parameter {name!r} must be an integer, got {raw!r}."
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise InvalidParameter(f"Query parameter {name!r} must be at least {minimum}{upper}.")
    return value


def page_args() -> tuple[int, int]:
    return int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT), int_arg("offset", 0, 0, 2**62)


def page_body(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
