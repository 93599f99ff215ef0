"""Reading request bodies: media types, encodings, size and record-count limits.

The import call takes ``application/json`` (``{"data": [record, ...]}``),
``application/x-ndjson`` (one record per line) and ``text/csv`` (a header row of
incoming field names), each optionally with ``Content-Encoding: gzip``. A line or
row that is not a record fails that record (``invalid_field_value`` with its
index), not the request.
"""

from __future__ import annotations

import gc
import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import request

from app.errors import ApiError, InvalidBody
from importer.config import Settings
from importer.formats import FormatError, Row, csv_rows, ndjson_rows
from importer.problems import ErrorCode, Problem, problem

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
CSV_TYPES = ("text/csv",)
_GZIP_WINDOW = 16 + zlib.MAX_WBITS


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class TooManyRecords(ApiError):
    status = 413
    code = "too_many_records"


@dataclass
class ParsedBatch:
    """The records of an import request, in order."""

    #: The records that could be read, keyed by incoming field name.
    records: list[dict[str, Any]]
    #: Their positions in the batch (``range`` when every record could be read).
    indexes: Sequence[int]
    #: One ``invalid_field_value`` per line or row that is not a record.
    malformed: list[Problem] = field(default_factory=list)

    @property
    def received(self) -> int:
        return len(self.records) + len(self.malformed)


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def loads_without_gc(raw: bytes | str) -> Any:
    """Parse JSON with the cyclic GC paused: building 100,000 dicts otherwise makes
    it rescan the growing heap again and again (4x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        if enabled:
            gc.enable()


def _decompress(raw: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(_GZIP_WINDOW)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error as error:
        raise InvalidBody(f"The body is not valid gzip: {error}.") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(
            f"The decompressed body is larger than {limit} bytes, the most this service accepts."
        )
    if not inflater.eof:
        raise InvalidBody("The gzip body is truncated.")
    return body


def read_body(settings: Settings, media_types: Sequence[str] = JSON_TYPES) -> bytes:
    """The request body, decompressed; 415 for another media type or encoding.

    werkzeug refuses a body over ``MAX_CONTENT_LENGTH`` with 413 while reading it.
    """
    mimetype = request.mimetype
    if mimetype not in media_types and not (
        "application/json" in media_types and mimetype.endswith("+json")
    ):
        raise UnsupportedMediaType(
            f"Send {' or '.join(media_types)} (got {mimetype or 'no Content-Type'})."
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"Send the body in UTF-8 (got charset={charset}).")
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    raw = request.get_data(cache=False)
    if encoding == "gzip":
        return _decompress(raw, settings.max_body_bytes)
    if encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; use gzip.")
    return raw


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_records:
        raise TooManyRecords(
            f"The batch has more than {settings.max_records} records, the most accepted per "
            "request. Split it into several requests."
        )


def _json_batch(raw: bytes, settings: Settings) -> ParsedBatch:
    try:
        document = loads_without_gc(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidBody(f"The body is not valid JSON: {error}.") from None
    if not isinstance(document, dict):
        raise InvalidBody(
            f"The body must be a JSON object with a 'data' array, got {_type_name(document)}."
        )
    if "data" not in document:
        raise InvalidBody("The body has no 'data' array: send {\"data\": [record, ...]}.")
    records = document["data"]
    if not isinstance(records, list):
        raise InvalidBody(f"'data' must be an array of records, got {_type_name(records)}.")
    _check_count(len(records), settings)
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise InvalidBody(
                f"Record {index} of 'data' is {_type_name(record)}; every record must be an object."
            )
    return ParsedBatch(records, range(len(records)))


def _rows_batch(rows: Any, settings: Settings, what: str) -> ParsedBatch:
    batch = ParsedBatch([], [])
    indexes: list[int] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for index, row in enumerate(rows):
            _check_count(index + 1, settings)
            read: Row = row
            if read.record is None:
                batch.malformed.append(
                    problem(
                        index,
                        None,
                        None,
                        ErrorCode.INVALID_FIELD_VALUE,
                        f"The {what} {read.problem}.",
                    )
                )
            else:
                batch.records.append(read.record)
                indexes.append(index)
    except FormatError as error:
        raise InvalidBody(f"The body is not valid {what}: {error}.") from None
    finally:
        if enabled:
            gc.enable()
    batch.indexes = indexes if batch.malformed else range(len(indexes))
    return batch


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidBody(f"The body is not UTF-8: {error}.") from None


def parse_batch(raw: bytes, settings: Settings) -> ParsedBatch:
    """The records of an import body in the request's media type; a non-empty batch
    within the record limit, or a 413/422."""
    mimetype = request.mimetype
    if mimetype in CSV_TYPES:
        batch = _rows_batch(csv_rows(io.StringIO(_text(raw), newline="")), settings, "CSV")
    elif mimetype in NDJSON_TYPES:
        batch = _rows_batch(ndjson_rows(io.StringIO(_text(raw), newline="")), settings, "NDJSON")
    else:
        batch = _json_batch(raw, settings)
    if not batch.received:
        raise InvalidBody("The batch is empty: send at least one record.")
    return batch


def json_body(settings: Settings) -> Any:
    """A small JSON request body (report definitions and the like)."""
    raw = read_body(settings)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidBody(f"The body is not valid JSON: {error}.") from None
