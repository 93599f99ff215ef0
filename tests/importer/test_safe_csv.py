"""CsvWriter: a block of rows is written as row-by-row defusedcsv would write it."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


_TEXT = st.text(alphabet=st.sampled_from(list("ab1 ,\"\r\n\t\x00=+-@|%'")), max_size=6)
#: Cells of one column: mostly of one kind, as results and errors are.
_COLUMNS = st.sampled_from(
    [
        st.integers(),
        st.one_of(st.none(), st.sampled_from(["", "V-1", "cbvndr_1", "created"])),
        # plain words, and one kind of cell that needs quoting or defusing, or none
        *(
            st.sampled_from(["a", "b c", "true", odd])
            for odd in ("x", 'a"b', "a,b", "a\nb", "a\rb", "=x", "-5", "\tx", "a\x00b")
        ),
        _TEXT,
        st.one_of(st.integers(), st.none(), st.floats(allow_nan=False), _TEXT, st.text()),
    ]
)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), width=st.integers(1, 5), length=st.integers(0, 12), ragged=st.booleans())
def test_any_block_is_written_as_row_by_row(
    data: st.DataObject, width: int, length: int, ragged: bool
) -> None:
    kinds = [data.draw(_COLUMNS) for _ in range(width)]
    block = [
        [data.draw(kind) for kind in kinds[: width - 1 if ragged and n % 2 else width] or kinds]
        for n in range(length)
    ]

    assert as_block(block) == one_by_one(block)
    if not ragged:
        columns = [list(column) for column in zip(*block, strict=True)]
        stream = io.StringIO()
        CsvWriter(stream).write_columns(columns)
        assert stream.getvalue() == one_by_one(block)
        if width > 1:  # lines assembled from cells written apart
            cells = [CsvWriter.cells(column) for column in columns]
            lines = "".join(",".join(row) + "\r\n" for row in zip(*cells, strict=True))
            assert lines == one_by_one(block)


def test_a_plain_block_is_the_csv_modules_text() -> None:
    rows = [[2, "V-1", "cbvndr_1", "created", "true"], [3, "V 2", None, "updated", ""]]

    assert as_block(rows) == "2,V-1,cbvndr_1,created,true\r\n3,V 2,,updated,\r\n"
