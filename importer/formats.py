"""Reading records from CSV and NDJSON, one at a time.

Used by the import endpoint (over a request body) and by ``importer push`` (over a
file of any size). Each reader yields ``Row`` items: a record, or the reason a line
could not be read as one (a malformed line fails that record, not the batch).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

BOM = b"\xef\xbb\xbf"


class FormatError(ValueError):
    """The text as a whole cannot be read (no header row, a repeated column...)."""


@dataclass(frozen=True, slots=True)
class Row:
    #: Line where the record starts (1 = the first line; a CSV's header is line 1).
    line: int
    record: dict[str, Any] | None
    #: Why the line is not a record, when ``record`` is None (a sentence, no full stop).
    problem: str | None = None
    #: The record's external_id when it could be read although the record could not.
    external_id: str | None = None


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


def ndjson_rows(lines: Iterable[bytes]) -> Iterator[Row]:
    """One JSON object per line (binary lines, UTF-8, with or without a BOM); blank
    lines are skipped."""
    for number, line in enumerate(lines, start=1):
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            yield Row(
                number,
                None,
                f"Line {number} is not valid JSON ({error.msg} at column {error.colno})",
            )
            continue
        if isinstance(value, dict):
            yield Row(number, value)
        else:
            yield Row(number, None, f"Line {number} holds a JSON {json_kind(value)}, not an object")


def csv_rows(text: Iterable[str], id_field: str | None = None) -> Iterator[Row]:
    """Rows of CSV text (read with ``newline=""``, so quoted newlines survive) whose
    header row names the fields (trimmed).

    Blank rows and rows of empty cells are skipped. A row with more fields than the
    header is not a record; a shorter row lacks its last fields; an empty cell is an
    empty string (which validation treats as absent). ``id_field`` names the column of
    the external_id, so a row that is not a record is still reported with it.
    """
    reader = csv.reader(text)
    header = next(reader, None)
    if not header or not any(name.strip() for name in header):
        raise FormatError("it has no header row (line 1 must name the fields)")
    names = [name.strip() for name in header]
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        raise FormatError(f"its header names {', '.join(map(repr, repeated))} more than once")
    id_column = names.index(id_field) if id_field in names else None
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
        if not any(value.strip() for value in fields):
            continue
        external_id = None
        if id_column is not None and id_column < len(fields):
            external_id = fields[id_column].strip() or None
        if len(fields) > len(names):
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
        yield Row(line, {name: value for name, value in cells if name}, external_id=external_id)
