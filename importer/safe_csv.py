"""CSV that a spreadsheet opens as data: no cell runs as a formula.

Used for every CSV the project writes for people to open (the push client's
``results.csv`` and ``errors.csv``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from defusedcsv import csv as defused_csv


class CsvWriter:
    """A CSV writer whose cells a spreadsheet shows as text, never runs as a formula.

    defusedcsv puts a ``'`` before a cell that starts with ``= + - @ | %`` (a number
    like ``-5`` excepted); a cell that starts with a tab or a carriage return (which
    some spreadsheets skip before reading a formula) gets the same ``'`` here.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._writer = defused_csv.writer(stream)

    @staticmethod
    def _inert(value: Any) -> Any:
        if isinstance(value, str) and value[:1] in ("\t", "\r"):
            return "'" + value
        return value

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([self._inert(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
