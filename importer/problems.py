"""Per-record problems: the shape of every entry of a batch's ``errors`` and ``warnings``."""

from __future__ import annotations

import enum
from typing import Any, TypedDict


class ErrorCode(enum.StrEnum):
    MISSING_REQUIRED_FIELD = "missing_required_field"
    INVALID_FIELD_VALUE = "invalid_field_value"
    UNMAPPED_FIELD = "unmapped_field"
    UNKNOWN_BASE_OBJECT = "unknown_base_object"
    DUPLICATE_EXTERNAL_ID = "duplicate_external_id"
    #: The worker could not write the record after all its retries (a server-side
    #: fault, not a problem with the record); ``importer batches retry`` re-drives it.
    WRITE_FAILED = "write_failed"


class Problem(TypedDict):
    index: int
    external_id: str | None
    field: str | None
    error_code: str
    message: str


def problem(
    index: int, external_id: Any, field: str | None, code: ErrorCode, message: str
) -> Problem:
    return {
        "index": index,
        "external_id": external_id if isinstance(external_id, str) else None,
        "field": field,
        "error_code": code.value,
        "message": message,
    }
