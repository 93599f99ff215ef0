"""CSV that a spreadsheet opens as data: no cell runs as a formula.

Used for every CSV the project writes for people to open: the push client's
``results.csv`` and ``errors.csv``, and the API's ``text/csv`` results and errors.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Sequence
from typing import IO, Any

from defusedcsv import csv as defused_csv

#: A cell starting with one of these may be run as a formula (defusedcsv's list, plus a
#: tab or a carriage return, which some spreadsheets skip before reading a formula).
_RISKY_STARTS = frozenset("=+-@|%\t\r")
#: Cells written as they are by both writers (defusedcsv leaves numbers and None alone).
_PLAIN_TYPES = frozenset((int, float, type(None)))


class CsvWriter:
    """A CSV writer whose cells a spreadsheet shows as text, never runs as a formula.

    defusedcsv puts a ``'`` before a cell that starts with ``= + - @ | %`` (a number
    like ``-5`` excepted); a cell that starts with a tab or a carriage return (which
    some spreadsheets skip before reading a formula) gets the same ``'`` here.

    ``writerows`` looks at a block of rows at once, column by column: when no cell needs
    quoting or defusing (the usual case: row numbers, ids, actions), its lines are
    joined in one go; when no text cell starts with a risky character (messages with
    commas, say), the block goes to the plain ``csv`` writer in one call; otherwise row
    by row through defusedcsv. All three write the same text.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._writer = defused_csv.writer(stream)
        self._plain = csv.writer(stream)

    @staticmethod
    def _inert(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("\t", "\r"):
            return "'" + value
        return value

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([self._inert(value) for value in row])

    def writerows(self, rows: Iterable[Sequence[Any]]) -> None:
        block = rows if isinstance(rows, list) else list(rows)
        if not block:
            return
        columns = list(itertools.zip_longest(*block))
        if len(set(map(len, block))) == 1 and self._write_bare(columns):
            return
        if all(map(_plain_column, columns)):
            self._plain.writerows(block)
            return
        for row in block:
            self.writerow(row)

    def write_columns(self, columns: Sequence[Sequence[Any]]) -> None:
        """Rows given column by column (every column as long), written as
        :meth:`writerows` writes them; cheaper when they come as columns."""
        if columns and columns[0] and not self._write_bare(columns):
            self.writerows(list(zip(*columns, strict=True)))

    @staticmethod
    def cells(column: Sequence[Any]) -> list[str]:
        """Each value as the text this writer writes for it as one cell of a row of
        several (quoted or made inert as needed): lines can then be assembled from
        cells written apart."""
        bare = _bare_cells(column)
        if bare is not None:
            return bare
        texts = []
        for value in column:
            line = io.StringIO()
            # A second, empty cell: a row's only cell is quoted when it is empty.
            CsvWriter(line).writerow([value, None])
            texts.append(line.getvalue()[: -len(",\r\n")])
        return texts

    def _write_bare(self, columns: Sequence[Sequence[Any]]) -> bool:
        """Write the rows of ``columns`` when no cell needs quoting or defusing (the lines
        the csv module would write, joined in one go); False, writing nothing, if not."""
        if len(columns) < 2:  # the csv module quotes a row's only cell when it is empty
            return False
        cells = [_bare_cells(column) for column in columns]
        if any(column is None for column in cells):
            return False
        self._stream.write("\r\n".join(map(",".join, zip(*cells, strict=True))) + "\r\n")
        return True


#: Characters that make the csv module quote a cell (the excel dialect's delimiter,
#: quote character and line breaks).
_QUOTED = (",", '"', "\r", "\n")


def _bare_cells(column: Sequence[Any]) -> list[str] | None:
    """The column's cells as the csv module writes them when none is quoted nor
    defused (ints, None as empty, text with no character to quote and no risky
    start); None when some cell is not so plain."""
    kinds = set(map(type, column))
    if kinds == {int}:
        return list(map(str, column))
    if not kinds <= {str, type(None)}:
        return None
    texts = [value or "" for value in column] if type(None) in kinds else list(column)
    if _risky(texts):
        return None
    joined = "".join(texts)
    return None if any(character in joined for character in _QUOTED) else texts


def _plain_column(column: tuple[Any, ...]) -> bool:
    """Whether both writers write this column the same (column by column: C-speed)."""
    kinds = set(map(type, column))
    if kinds <= _PLAIN_TYPES:
        return True
    if kinds - _PLAIN_TYPES != {str}:
        return False
    texts = column if kinds == {str} else [value for value in column if type(value) is str]
    return not _risky(texts)


def _risky(texts: Iterable[str]) -> bool:
    """Whether a cell starts with a character that may make it a formula."""
    return not _RISKY_STARTS.isdisjoint({text[:1] for text in texts})
