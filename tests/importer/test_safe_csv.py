"""CsvWriter: a block of rows is written as row-by-row defusedcsv would write it."""

from __future__ import annotations

import io
from typing import Any

import pytest

from importer.safe_csv import CsvWriter

SAFE = [[2, "V-1", "cbvndr_1", "created"], [3, "V-2", None, "updated"], [4, "x", 1.5, ""]]


def one_by_one(rows: list[list[Any]]) -> str:
    stream = io.StringIO()
    writer = CsvWriter(stream)
    for row in rows:
        writer.writerow(row)
    return stream.getvalue()


def as_block(rows: list[list[Any]]) -> str:
    stream = io.StringIO()
    CsvWriter(stream).writerows(rows)
    return stream.getvalue()


@pytest.mark.parametrize(
    "risky",
    ["=1+2", "+1", "-x", "@SUM(A1)", "|cmd", "%0A", "\tx", "\rx", "-5", "a=b", b"bytes"],
)
def test_a_block_is_written_as_row_by_row(risky: Any) -> None:
    rows = [*SAFE, [5, risky, "cbvndr_5", "created"], [6, "tail"]]

    assert as_block(rows) == one_by_one(rows)


def test_a_formula_in_a_block_is_inert() -> None:
    text = as_block([*SAFE, [5, '=HYPERLINK("x")', "id", "created"]])

    assert text.splitlines()[-1] == '5,"\'=HYPERLINK(""x"")",id,created'
    assert as_block(SAFE) == one_by_one(SAFE)
