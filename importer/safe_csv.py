"""CSV that a spreadsheet opens as data: no cell runs as a formula.

Used for every CSV the project writes for people to open: the push client's
``results.csv`` and ``errors.csv``, and the API's ``text/csv`` results and errors.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Sequence
from typing import IO, Any

from defusedcsv import csv as defused_csv

#: A cell starting with one of these may be run as a formula (defusedcsv's list, plus a
#: tab or a carriage return, which some spreadsheets skip before reading a formula).
_RISKY_STARTS = tuple("\x00" + character for character in "=+-@|%\t\r")
#: Cells written as they are by both writers (defusedcsv leaves numbers and None alone).
_PLAIN_TYPES = frozenset((int, float, type(None)))


class CsvWriter:
    """A CSV writer whose cells a spreadsheet shows as text, never runs as a formula.

    defusedcsv puts a ``'`` before a cell that starts with ``= + - @ | %`` (a number
    like ``-5`` excepted); a cell that starts with a tab or a carriage return (which
    some spreadsheets skip before reading a formula) gets the same ``'`` here.

    ``writerows`` looks at a block of rows at once: when no text cell in it starts with
    one of those characters (the usual case: ids, actions, messages), the block goes to
    the plain ``csv`` writer in one call; otherwise row by row through defusedcsv.
    """

    def __init__(self, stream: IO[str]) -> None:
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
        if all(map(_plain_column, itertools.zip_longest(*block))):
            self._plain.writerows(block)
            return
        for row in block:
            self.writerow(row)


def _plain_column(column: tuple[Any, ...]) -> bool:
    """Whether both writers write this column the same (column by column: C-speed)."""
    kinds = set(map(type, column))
    if kinds <= _PLAIN_TYPES:
        return True
    if kinds - _PLAIN_TYPES != {str}:
        return False
    texts = column if kinds == {str} else [value for value in column if type(value) is str]
    joined = "\x00" + "\x00".join(texts)  # each cell after a NUL: one scan per character
    return not any(start in joined for start in _RISKY_STARTS)
