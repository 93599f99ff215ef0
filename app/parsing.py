"""Reading request bodies: media types, encodings, size and record-count limits.

The import call takes ``application/json`` (``{"data": [record, ...]}``),
``application/x-ndjson`` (one record per line) and ``text/csv`` (a header row of
incoming field names), each optionally with ``Content-Encoding: gzip``. A line or
row that is not a record fails that record (``invalid_field_value`` with its
index), not the request.
"""

from __future__ import annotations

import io
import itertools
import re
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import orjson
from flask import request

from app.errors import InvalidBody, PayloadTooLarge, TooManyRecords, UnsupportedMediaType
from app.text_inputs import check_document
from importer.collector import gc_paused
from importer.config import Settings
from importer.formats import FormatError, Row, UnreadableRecord, csv_rows, loads_record, ndjson_rows
from importer.problems import ErrorCode, Problem, problem
from importer.validation import raw_external_id

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")
CSV_TYPES = ("text/csv",)
_GZIP_WINDOW = 16 + zlib.MAX_WBITS
_READ_SIZE = 64 * 1024


@dataclass
class ParsedBatch:
    """The records of an import request, in order."""

    #: The records that could be read: dicts keyed by incoming field name, or (for a
    #: large JSON batch, left to the workers to validate) each record's JSON bytes.
    records: list[Any]
    #: Their positions in the batch (``range`` when every record could be read).
    indexes: Sequence[int]
    #: One ``invalid_field_value`` per line or row that is not a record.
    malformed: list[Problem] = field(default_factory=list)
    #: The external_id of each record, when ``records`` are JSON bytes.
    external_ids: list[str | None] | None = None

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


def _read_stream(limit: int) -> bytearray:
    """The raw body, read into one buffer.

    ``request.get_data()`` would read it in pieces, join them, then copy the result:
    three bodies' worth of memory at once for a 64 MiB upload.
    """
    # werkzeug's LimitedStream (a RawIOBase) refuses a body over MAX_CONTENT_LENGTH (413).
    stream = cast(io.RawIOBase, request.stream)
    length = request.content_length
    if length is not None:
        body = bytearray(length)
        view = memoryview(body)
        position = 0
        while position < length:
            count = stream.readinto(view[position : position + _READ_SIZE])
            if not count:
                raise InvalidBody("The body ended before its Content-Length.")
            position += count
        view.release()
        return body
    body = bytearray()
    while chunk := stream.read(_READ_SIZE):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge("The request body is larger than this service accepts.")
    return body


def _decompress(raw: bytes | bytearray, limit: int) -> bytes:
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


def read_body(settings: Settings, media_types: Sequence[str] = JSON_TYPES) -> bytes | bytearray:
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
    raw = _read_stream(settings.max_body_bytes)
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


class _Envelope(msgspec.Struct):
    """``{"data": [...]}`` with each record kept as its raw JSON bytes."""

    data: list[msgspec.Raw]


_MSGSPEC_KINDS = {
    "array": "an array",
    "object": "an object",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}


def _json_error(error: msgspec.MsgspecError) -> InvalidBody:
    text = str(error)
    if "missing required field `data`" in text:
        return InvalidBody("The body has no 'data' array: send {\"data\": [record, ...]}.")
    if text.startswith("Expected `object`, got ") and " - at " not in text:
        kind = text.removeprefix("Expected `object`, got `").split("`")[0]
        kind = _MSGSPEC_KINDS.get(kind, kind)
        return InvalidBody(f"The body must be a JSON object with a 'data' array, got {kind}.")
    if text.endswith("- at `$.data`"):
        kind = text.removeprefix("Expected `array`, got `").split("`")[0]
        return InvalidBody(
            f"'data' must be an array of records, got {_MSGSPEC_KINDS.get(kind, kind)}."
        )
    return InvalidBody(f"The body is not valid JSON: {text}.")


def _record(raw: msgspec.Raw | bytes, index: int) -> dict[str, Any]:
    """Record ``index`` of the batch, parsed; raises :class:`UnreadableRecord` for one
    that is JSON holding a value nothing can read (that record alone fails)."""
    try:
        record = loads_record(memoryview(raw))
    except orjson.JSONDecodeError as error:
        raise InvalidBody(f"Record {index} of 'data' is not valid JSON: {error}.") from None
    except UnreadableRecord as unreadable:
        if isinstance(unreadable.value, dict):
            raise
        record = unreadable.value
    if not isinstance(record, dict):
        raise InvalidBody(
            f"Record {index} of 'data' is {_type_name(record)}; every record must be an object."
        )
    return record


#: A ``\uXXXX`` escape of a UTF-16 surrogate, with the backslashes before it (an even
#: number of them escape each other; an odd number makes this an escape).
_SURROGATE_ESCAPE = re.compile(rb"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


@dataclass
class _Masked:
    """A body whose lone-surrogate escapes were replaced by tokens, so msgspec can
    split it (it refuses the whole body for one). A record holding a token is given
    back as sent, to fail alone (:func:`importer.formats.loads_record`)."""

    nonce: bytes
    escapes: list[bytes]

    def original(self, raw: msgspec.Raw) -> msgspec.Raw | bytes:
        data = bytes(raw)
        if self.nonce not in data:
            return raw
        token = re.compile(re.escape(self.nonce) + rb"([0-9a-f]{8})")
        return token.sub(lambda match: self.escapes[int(match[1], 16)], data)


def _mask_lone_surrogates(raw: bytes | bytearray) -> tuple[bytes, _Masked] | None:
    escapes = [m for m in _SURROGATE_ESCAPE.finditer(raw) if len(m[1]) % 2 == 1]
    paired: set[int] = set()
    for high, low in itertools.pairwise(escapes):
        if (
            low.start() == high.end()
            and len(low[1]) == 1
            and high[2][1:2].lower() in b"89ab"
            and low[2][1:2].lower() in b"cdef"
        ):
            paired.update((high.start(), low.start()))
    lone = [m for m in escapes if m.start() not in paired]
    if not lone:
        return None
    masked = _Masked(secrets.token_hex(8).encode(), [])
    pieces, position = [], 0
    for match in lone:
        escape_at = match.end() - 6  # the final backslash and uXXXX
        pieces += [raw[position:escape_at], masked.nonce, b"%08x" % len(masked.escapes)]
        masked.escapes.append(bytes(raw[escape_at : match.end()]))
        position = match.end()
    pieces.append(raw[position:])
    return b"".join(pieces), masked


def _split(raw: bytes | bytearray) -> tuple[list[msgspec.Raw], _Masked | None]:
    """The records of ``{"data": [...]}``, each as its raw JSON bytes."""
    try:
        try:
            return msgspec.json.decode(raw, type=_Envelope).data, None
        except msgspec.DecodeError as error:
            found = _mask_lone_surrogates(raw)
            if found is None:
                raise _json_error(error) from None
            return msgspec.json.decode(found[0], type=_Envelope).data, found[1]
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise _json_error(error) from None
    except RecursionError:
        raise InvalidBody("The body is not valid JSON: it is nested too deeply.") from None


def _json_batch(raw: bytes | bytearray, settings: Settings, id_field: str | None) -> ParsedBatch:
    """A JSON batch. Its envelope is split into records' raw bytes first (cheap in time
    and memory); a batch the web validates is then parsed whole, while a larger one
    is only read record by record for its external_ids and kept as bytes: the web
    never holds 100,000 parsed records at once. A record holding a value nothing can
    read fails alone, like an unreadable NDJSON line."""
    items, masked = _split(raw)
    count = len(items)
    _check_count(count, settings)
    deferred = count > settings.sync_max_records
    batch = ParsedBatch([], [], external_ids=[] if deferred else None)
    indexes: list[int] = []
    with gc_paused():  # no cycles are made here; spare the collector 100,000 rescans
        for index, item in enumerate(items):
            try:
                record = _record(masked.original(item) if masked else item, index)
            except UnreadableRecord as unreadable:
                batch.malformed.append(
                    problem(
                        index,
                        unreadable.external_id(id_field),
                        unreadable.field,
                        ErrorCode.INVALID_FIELD_VALUE,
                        f"Record {index} {unreadable}; the record was not read.",
                    )
                )
                continue
            indexes.append(index)
            if batch.external_ids is None:
                batch.records.append(record)
            else:
                batch.records.append(item)
                batch.external_ids.append(raw_external_id(record, id_field))
    batch.indexes = indexes if batch.malformed else range(len(indexes))
    return batch


def _rows_batch(rows: Any, settings: Settings, what: str) -> ParsedBatch:
    batch = ParsedBatch([], [])
    indexes: list[int] = []
    try:
        with gc_paused():
            for index, row in enumerate(rows):
                _check_count(index + 1, settings)
                read: Row = row
                if read.record is None:
                    batch.malformed.append(
                        problem(
                            index,
                            read.external_id,
                            read.field,
                            ErrorCode.INVALID_FIELD_VALUE,
                            f"{read.problem}; the record was not read.",
                        )
                    )
                else:
                    batch.records.append(read.record)
                    indexes.append(index)
    except FormatError as error:
        raise InvalidBody(f"The body is not valid {what}: {error}.") from None
    batch.indexes = indexes if batch.malformed else range(len(indexes))
    return batch


def _text(raw: bytes | bytearray) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidBody(f"The body is not UTF-8: {error}.") from None


def parse_batch(
    raw: bytes | bytearray, settings: Settings, id_field: str | None = None
) -> ParsedBatch:
    """The records of an import body in the request's media type; a non-empty batch
    within the record limit, or a 413/422. ``id_field`` is the incoming name of the
    external_id (read from a large JSON batch without parsing it whole)."""
    mimetype = request.mimetype
    if mimetype in CSV_TYPES:
        rows = csv_rows(io.StringIO(_text(raw), newline=""), id_field)
        batch = _rows_batch(rows, settings, "CSV")
    elif mimetype in NDJSON_TYPES:
        batch = _rows_batch(ndjson_rows(io.BytesIO(raw), id_field), settings, "NDJSON")
    else:
        batch = _json_batch(raw, settings, id_field)
    if not batch.received:
        raise InvalidBody("The batch is empty: send at least one record.")
    return batch


def json_body(settings: Settings) -> Any:
    """A small JSON request body (report definitions and the like), with no text the
    service cannot store (:func:`app.text_inputs.check_document`)."""
    raw = read_body(settings)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidBody(f"The body is not valid JSON: {error}.") from None
    check_document(document)
    return document
