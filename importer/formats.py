"""Reading records from CSV and NDJSON, one at a time, and one JSON record.

Used by the import endpoint (over a request body) and by ``importer push`` (over a
file of any size). Each reader yields ``Row`` items: a record, or the reason a line
could not be read as one (a malformed line fails that record, not the batch).

A JSON record can be valid JSON and still hold a value nothing can read: a number
beyond the range of a double (``1e400``, a 400-digit integer), which orjson refuses,
or a lone UTF-16 surrogate (``"\\ud800"``), which is not a character (no text column
stores it, no JSON encoder writes it). :func:`loads_record` says which field holds it,
so that record alone fails, naming the field.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from importer.validation import raw_external_id

BOM = b"\xef\xbb\xbf"


class FormatError(ValueError):
    """The text as a whole cannot be read (no header row, a repeated column...)."""


@dataclass(slots=True)
class Row:
    #: Line where the record starts (1 = the first line; a CSV's header is line 1).
    line: int
    record: dict[str, Any] | None
    #: Why the line is not a record, when ``record`` is None (a sentence, no full stop).
    problem: str | None = None
    #: The record's external_id when it could be read although the record could not.
    external_id: str | None = None
    #: The field (incoming name) whose value could not be read, when one could not.
    field: str | None = None


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "value"


_SURROGATE = re.compile("[\ud800-\udfff]")


class _OutOfRange(str):
    """The text of a JSON number beyond the range of a double, as read leniently."""


class UnreadableRecord(ValueError):
    """Valid JSON holding a value nothing can read. ``str()`` is a predicate naming it
    (``holds a number out of range (1e400) in field 'Score'``); ``field`` is the key
    holding it (None for a field name itself); ``value`` is the JSON as read leniently."""

    def __init__(self, reason: str, field: str | None, value: Any) -> None:
        super().__init__(reason)
        self.field = field
        self.value = value

    def external_id(self, incoming: str | None) -> str | None:
        """The record's external_id (``incoming``: its name), when it is readable."""
        found = raw_external_id(self.value, incoming)
        if found is None or isinstance(self.value.get(incoming), _OutOfRange):
            return None
        return None if _SURROGATE.search(found) else found


def _number(text: str) -> Any:
    value = float(text)
    if math.isinf(value):
        return _OutOfRange(text)
    return value if any(mark in text for mark in ".eE") else int(text)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _what_is_unreadable(value: Any) -> tuple[str, str] | None:
    """The first unreadable thing inside ``value``, if any: what it is, and details."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _OutOfRange):
            shown = item if len(item) <= 24 else f"{item[:12]}..., {len(item)} characters"
            return "a number out of range", f"{shown}; numbers must lie within +/-1.8e308"
        if isinstance(item, str):
            if match := _SURROGATE.search(item):
                return "a lone surrogate", _surrogate(match.group())
        elif isinstance(item, dict):
            for key, child in item.items():
                if match := _SURROGATE.search(key):
                    return "a lone surrogate in a key", _surrogate(match.group())
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _surrogate(character: str) -> str:
    return f"\\u{ord(character):04x}, which is not a character"


def loads_record(data: bytes | bytearray | memoryview) -> Any:
    """One JSON value, read by orjson. Raises ``orjson.JSONDecodeError`` when it is not
    JSON, :class:`UnreadableRecord` when it is JSON holding a value nothing can read
    (found by reading it again with the standard library, which accepts both)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        not_json = error
    try:
        value = json.loads(
            bytes(data), parse_int=_number, parse_float=_number, parse_constant=_refuse_constant
        )
    except (ValueError, RecursionError):
        raise not_json from None
    if isinstance(value, dict):
        for key, item in value.items():
            if match := _SURROGATE.search(key):
                reason = f"holds a lone surrogate in a field name ({_surrogate(match.group())})"
                raise UnreadableRecord(reason, None, value)
            if found := _what_is_unreadable(item):
                what, details = found
                raise UnreadableRecord(f"holds {what} in field {key!r} ({details})", key, value)
    elif found := _what_is_unreadable(value):
        raise UnreadableRecord("holds {} ({})".format(*found), None, value)
    raise not_json


def ndjson_rows(lines: Iterable[bytes], id_field: str | None = None) -> Iterator[Row]:
    """One JSON object per line (binary lines, UTF-8, with or without a BOM); blank
    lines are skipped. ``id_field`` names the external_id, so a line that is JSON but
    not a record is still reported with it."""
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if not line.strip():
            continue
        try:
            value = loads_record(line)
        except orjson.JSONDecodeError as error:
            yield Row(
                number,
                None,
                f"Line {number} is not valid JSON ({error.msg} at column {error.colno})",
            )
            continue
        except UnreadableRecord as unreadable:
            if isinstance(unreadable.value, dict):
                yield Row(
                    number,
                    None,
                    f"Line {number} {unreadable}",
                    unreadable.external_id(id_field),
                    unreadable.field,
                )
            else:
                kind = json_kind(unreadable.value)
                yield Row(number, None, f"Line {number} holds a JSON {kind}, not an object")
            continue
        if isinstance(value, dict):
            yield Row(number, value)
        else:
            yield Row(number, None, f"Line {number} holds a JSON {json_kind(value)}, not an object")


def _csv_header(reader: Any) -> list[str]:
    """The field names of the header row (trimmed); FormatError when there is none or
    a name repeats."""
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise FormatError("it has no header row (line 1 must name the fields)")
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise FormatError(f"its header names {', '.join(map(repr, repeated))} more than once")
    return names


def csv_external_ids(text: Iterable[str], id_field: str | None) -> Iterator[str | None]:
    """For each row :func:`csv_rows` yields, in order, the external_id of the record it
    yields (None: no external_id, or the row is not a record); without building the
    records, so a pass that needs only the ids (the push client's duplicate survey)
    costs about half a full read."""
    reader = csv.reader(text)
    names = _csv_header(reader)
    width = len(names)
    column = names.index(id_field) if id_field in names else width
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield None
            continue
        if not "".join(fields).strip():
            continue
        if column < len(fields) <= width:
            yield fields[column].strip() or None
        else:
            yield None


def csv_rows(text: Iterable[str], id_field: str | None = None) -> Iterator[Row]:
    """Rows of CSV text (read with ``newline=""``, so quoted newlines survive) whose
    header row names the fields (trimmed).

    Blank rows and rows of empty cells are skipped. A row with more fields than the
    header is not a record; a shorter row lacks its last fields; an empty cell is an
    empty string (which validation treats as absent). ``id_field`` names the column of
    the external_id, so a row that is not a record is still reported with it.
    """
    reader = csv.reader(text)
    names = _csv_header(reader)
    id_column = names.index(id_field) if id_field in names else None
    every_column_named = all(names)
    last_line = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line, last_line = last_line + 1, reader.line_num
            yield Row(line, None, f"Row {line} is not valid CSV ({error})")
            continue
        line, last_line = last_line + 1, reader.line_num
        if not "".join(fields).strip():  # blank, or every cell empty or spaces
            continue
        if len(fields) > len(names):
            external_id = None  # read only for a row that is not a record: it is reported
            if id_column is not None:
                external_id = fields[id_column].strip() or None
            yield Row(
                line,
                None,
                f"Row {line} has {len(fields)} fields but the header names {len(names)} "
                "(a value probably holds an unquoted comma)",
                external_id,
            )
            continue
        # A short row lacks its last fields (zip stops at the shorter).
        cells = zip(names, fields, strict=False)
        record = (
            dict(cells) if every_column_named else {name: value for name, value in cells if name}
        )
        yield Row(line, record)
