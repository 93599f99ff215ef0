"""The push client's duplicate survey reads a CSV file's external_ids without building
its records (importer.formats.csv_external_ids); it must find the very ids a full
read (csv_rows) gives, row for row, or a duplicate would be sent or a record refused."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from importer.formats import FormatError, csv_external_ids, csv_rows
from importer.validation import raw_external_id

#: Cells with what makes CSV rows odd: separators, quotes, line breaks, spaces.
CELLS = st.text(alphabet=' a1,"\n\r\t;', max_size=6)
HEADERS = st.lists(st.sampled_from(["id", "name", "", "x", " id "]), min_size=1, max_size=4)


def full_read(text: str, id_field: str) -> list[str | None] | str:
    try:
        return [
            raw_external_id(row.record, id_field) if row.record is not None else None
            for row in csv_rows(io.StringIO(text, newline=""), id_field)
        ]
    except FormatError as error:
        return str(error)


def ids_alone(text: str, id_field: str) -> list[str | None] | str:
    try:
        return list(csv_external_ids(io.StringIO(text, newline=""), id_field))
    except FormatError as error:
        return str(error)


def as_csv(header: list[str], rows: list[list[str]], quote: bool) -> str:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if quote else value

    return "\r\n".join(",".join(map(cell, row)) for row in [header, *rows]) + "\r\n"


@settings(max_examples=300, deadline=None)
@given(
    header=HEADERS,
    rows=st.lists(st.lists(CELLS, max_size=6), max_size=12),
    quote=st.booleans(),
)
def test_the_ids_alone_are_those_of_a_full_read_row_for_row(header, rows, quote):
    text = as_csv(header, rows, quote)
    for id_field in ("id", "name", "absent"):
        assert ids_alone(text, id_field) == full_read(text, id_field)


def test_rows_that_are_not_records_give_no_id():
    text = 'id,name\r\n A-1 ,x\r\n,,\r\nA-2,x,extra\r\nA-3\r\n\r\n   ,y\r\nA-4,"x\r\n'
    assert ids_alone(text, "id") == full_read(text, "id")
    assert full_read(text, "id") == ["A-1", None, "A-3", None, "A-4"]


def test_a_header_that_names_nothing_or_a_field_twice_is_refused_the_same_way():
    for text in (" , \r\nA-1,x\r\n", "id,id\r\nA-1,x\r\n"):
        assert isinstance(ids_alone(text, "id"), str)
        assert ids_alone(text, "id") == full_read(text, "id")
