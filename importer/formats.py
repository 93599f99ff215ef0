"""Reading records from CSV and NDJSON text, one at a time.

Used by the import endpoint (over a request body) and by ``importer push`` (over a
file of any size). Each reader yields ``Row`` items: a record, or the reason a
line could not be read as one (a malformed line fails that record, not the batch).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import orjson


class FormatError(ValueError):
    """The text as a whole cannot be read (no header row, a repeated column...)."""


@dataclass(frozen=True)
class Row:
    #: Line of the text where the record starts (1 = the first line).
    line: int
    record: dict[str, Any] | None
    #: Why the line is not a record, when ``record`` is None.
    problem: str | None = None


def ndjson_rows(stream: TextIO) -> Iterator[Row]:
    """One JSON object per line; blank lines are skipped."""
    for line_number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            yield Row(line_number, None, f"line {line_number} is not valid JSON: {error}")
            continue
        if isinstance(value, dict):
            yield Row(line_number, value)
        else:
            kind = "an array" if isinstance(value, list) else type(value).__name__
            yield Row(line_number, None, f"line {line_number} is {kind}, not a JSON object")


def csv_rows(stream: TextIO) -> Iterator[Row]:
    """Comma-separated values with a header row of field names (trimmed).

    Quoted fields may hold commas, quotes (doubled) and newlines. A row with more
    fields than the header is malformed; a shorter row lacks the missing fields;
    an empty cell is an empty string (which validation treats as absent).
    """
    reader = csv.reader(stream)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise FormatError("the CSV has no header row") from None
    if not any(header):
        raise FormatError("the CSV header row is empty")
    repeated = sorted({name for name in header if header.count(name) > 1 and name})
    if repeated:
        raise FormatError(f"the CSV header names {', '.join(map(repr, repeated))} more than once")
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield Row(line, None, f"the row at line {line} is not valid CSV: {error}")
            line = reader.line_num + 1
            continue
        if values and not (len(values) == 1 and not values[0].strip() and len(header) > 1):
            if len(values) > len(header):
                problem = f"the row at line {line} has {len(values)} fields"
                yield Row(line, None, f"{problem}; the header has {len(header)}")
            else:
                # A short row lacks its last fields (zip stops at the shorter).
                cells = zip(header, values, strict=False)
                yield Row(line, {name: value for name, value in cells if name})
        line = reader.line_num + 1
