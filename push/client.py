"""``importer push SLUG FILE``: stream a CSV, NDJSON or JSON file to the import API.

The file is never loaded whole. It is read at least twice, streaming every time: a
first pass (:func:`survey`) counts its records, which also proves it readable before
anything is sent, and finds the external_ids it holds more than once; then the records
are sent in chunks of ``--chunk-size`` records. On Linux the first pass runs in a child
process while the first chunks are read (:func:`surveyed_chunks`). Sending, waiting and
reading back overlap (:func:`_run`): ``--concurrency`` chunks are sent at once while up
to ``--window`` sent chunks are waited for (one long-poll at a time, the oldest) and
read back (each done batch's results and errors whole, one stream a list: the results
as CSV, each line spliced after its record's row and external_id, which the chunk
keeps; the errors as NDJSON).
Each request carries an ``Idempotency-Key`` made from the slug, the chunk's number and
the chunk's bytes, so running the same push again (after a crash, a kill, a lost answer)
sends nothing twice: the service replays the answer it gave the first time.

One file gets the answer one batch would get: an external_id that occurs more than once
in the file fails every occurrence with ``duplicate_external_id``, wherever they fall,
and none of them is sent. Which rows those are depends on the file alone, so the chunks
(and their keys) are the same on every run.

Every record keeps its row number in the file (CSV: the line its row starts on, the
header being line 1; NDJSON: its line; JSON: its 1-based position in the array), and
``results.csv`` and ``errors.csv``, written next to the file, speak in those numbers.
A line or row that cannot be read as a record (malformed JSON, more CSV fields than
the header names) is not sent: it goes to ``errors.csv`` as ``invalid_field_value``.
Blank lines, and CSV rows whose every field is empty, are not records and are skipped.
Both files are created like any file (their mode follows the umask), and a cell a
spreadsheet would run as a formula is written inert (:class:`CsvWriter`).

Exit codes: 0 every record was written, 1 some failed, 2 the push could not run.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
import heapq
import io
import itertools
import multiprocessing
import operator
import os
import random
import secrets
import signal
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote

import click
import ijson
import orjson
import requests
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from importer.formats import (
    FormatError,
    Row,
    csv_external_ids,
    csv_rows,
    json_kind,
    ndjson_rows,
)
from importer.safe_csv import CsvWriter

# The service's own rule for reading an external_id and its message for a duplicate:
# one file gets the answer one batch would get.
from importer.validation import duplicate_message
from importer.validation import raw_external_id as external_id
from push.settings import ClientSettings

FORMATS = ("csv", "ndjson", "json")
EXTENSIONS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}
RESULTS_CSV = "results.csv"
ERRORS_CSV = "errors.csv"
RESULT_COLUMNS = ("row", "external_id", "coverbase_id", "action", "changed")
ERROR_COLUMNS = ("row", "external_id", "field", "error_code", "message")
INVALID = "invalid_field_value"
DUPLICATE = "duplicate_external_id"

EXIT_OK, EXIT_SOME_FAILED, EXIT_CANNOT_RUN = 0, 1, 2

#: Whether the survey runs in a child process while the first chunks are read
#: (:func:`surveyed_chunks`): on Linux, where a forked child can safely go on (macOS's
#: system libraries may not survive a fork once the process has used the network).
SURVEY_APART = sys.platform.startswith("linux")
#: Request bodies made ahead while the survey runs, at most.
READ_AHEAD_BYTES = 64 * 1024 * 1024
#: A file this large at most is read once: every chunk is made (its body held) before
#: anything is sent, and the repeated external_ids are found among the chunks' own,
#: with no survey pass (:func:`surveyed_chunks`).
ONE_PASS_BYTES = 64 * 1024 * 1024
#: A CSV file larger than this is cut in two for its survey where the survey runs
#: apart (:func:`survey_split`); a smaller one is read once.
SPLIT_FROM_BYTES = 1024 * 1024
#: Where a CSV file is cut: at three tenths of it (reading a row into its chunk and
#: encoding it costs this process about 2.5 x what surveying it costs the child, so both
#: end together: 300,000 rows in 0.5-0.6 s each), at most this far in (this process
#: holds the request bodies up to the cut).
CUT_MAX_BYTES = 32 * 1024 * 1024

#: Records per request by default. Each request costs the service bookkeeping whatever
#: its size (accepting a batch, a release pass, a long-poll, a results stream): for the
#: same 300,000 records, the web spent 3.0-4.0 s of CPU on 60 requests of 5,000, 1.9-2.3 s
#: on 15 of 20,000, 1.0-1.4 s on a plain script's 3 of 100,000 (docs/benchmarks.md,
#: section 7). The service still splits each into chunks of IMPORTER_CHUNK_SIZE for its
#: workers.
CHUNK_SIZE = 20_000

#: Answers worth the same request again, later (with the same Idempotency-Key).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Long-poll lengths tried in turn: the service refuses a wait above its own limit.
WAIT_STEPS = (20, 10, 5, 2, 1, 0)
#: How a batch's results and errors are read whole (one stream per list).
NDJSON = "application/x-ndjson"
CSV = "text/csv"
#: The fields of a done chunk's results, read as one CSV stream: each line is spliced
#: after its record's row and external_id (the chunk's own: the service would read it
#: back from the object, one lookup per record) to make its line of results.csv. The
#: service writes them with the same CsvWriter; the index, an integer, ends at the
#: first comma. A chunk whose every record was written is read without the index (the
#: stream is in index order: its n-th line is the n-th record's).
RESULT_STREAM_FIELDS = "index,coverbase_id,action,changed"
#: The fields of a done chunk's errors, read as one NDJSON stream.
ERROR_STREAM_FIELDS = "index,external_id,field,error_code,message"
#: (connect, read) seconds; a synchronous import may take the service's whole wait.
TIMEOUT = (10.0, 300.0)
MAX_DELAY = 300.0
DONE = frozenset({"completed", "failed"})
USER_AGENT = "importer-push/1"


class PushError(Exception):
    """The push cannot run, or cannot go on (exit code 2)."""


class SourceError(PushError):
    """The file cannot be read as its format."""


# --- reading the file -----------------------------------------------------------------


#: One record of the file, or a problem in place of one (``record`` is None).
SourceRow = Row


def detect_format(path: Path, override: str | None = None) -> str:
    if override:
        return override
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise click.UsageError(
            f"Cannot tell the format of {path.name!r} from its extension "
            f"(.csv, .ndjson, .jsonl, .json): pass --format {'|'.join(FORMATS)}."
        )
    return fmt


def read_rows(path: Path, fmt: str, external_id_field: str | None = None) -> Iterator[SourceRow]:
    """The file's records in order, one at a time (a generator: the file is streamed).

    ``external_id_field`` (the report's incoming name of ``external_id``) lets a CSV
    row that cannot be sent still be reported with its external_id.
    """
    with _reading(path):
        if fmt == "csv":
            with _csv_text(path) as text:
                for row in csv_rows(text, external_id_field):
                    yield row if row.problem is None else _not_sent(row, "row")
        elif fmt == "ndjson":
            with path.open("rb") as binary:
                for row in ndjson_rows(binary):
                    yield row if row.problem is None else _not_sent(row, "line")
        elif fmt == "json":
            with path.open("rb") as binary:
                yield from json_rows(binary)
        else:
            raise SourceError(f"Unknown format {fmt!r}.")


def read_external_ids(path: Path, fmt: str, id_field: str | None) -> Iterator[str | None]:
    """For each item :func:`read_rows` yields, the external_id of its record (None: it
    has none, or it is not a record). A CSV file's ids are read without building its
    records."""
    if fmt != "csv":
        for row in read_rows(path, fmt):
            yield external_id(row.record, id_field) if row.record is not None else None
        return
    with _reading(path), _csv_text(path) as text:
        yield from csv_external_ids(text, id_field)


def _csv_text(path: Path) -> IO[str]:
    # utf-8-sig drops a byte-order mark; newline="" lets csv see quoted newlines.
    return path.open(encoding="utf-8-sig", newline="")


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """What goes wrong reading the file, as a SourceError."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise SourceError(f"{path} is not UTF-8 text ({error.reason}).") from None
    except FormatError as error:
        raise SourceError(f"The CSV file cannot be read: {error}.") from None
    except OSError as error:
        raise SourceError(f"Cannot read {path}: {error.strerror or error}.") from None


def _not_sent(row: Row, what: str) -> Row:
    return dataclasses.replace(row, problem=f"{row.problem}; the {what} was not sent.")


def json_rows(binary: IO[bytes]) -> Iterator[SourceRow]:
    """The objects of a top-level array, or of the ``data`` array of a top-level object,
    parsed incrementally (ijson); ``row`` is the 1-based position in the array."""
    events = iter(ijson.parse(binary, use_float=True))
    try:
        item_prefix = _records_array(events)
        position = 0
        for prefix, event, value in events:
            if prefix != item_prefix:
                break  # the end of the records array (an element's own events are consumed)
            position += 1
            element = _build(event, value, events) if event in _STARTS else value
            if isinstance(element, dict):
                yield SourceRow(position, element)
            else:
                yield SourceRow(
                    position,
                    None,
                    f"Element {position} of the array is a JSON {json_kind(element)}, "
                    "not an object; it was not sent.",
                )
        for _ in events:  # what follows the array must be well-formed too
            pass
    except ijson.JSONError as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SourceError(f"The file is not valid JSON ({reason}).") from None


_STARTS = ("start_map", "start_array")
_ENDS = ("end_map", "end_array")


def _records_array(events: Iterator[tuple[str, str, Any]]) -> str:
    first = next(events, None)
    if first is not None and first[1] == "start_array":
        return "item"
    if first is not None and first[1] == "start_map":
        for prefix, event, value in events:
            if prefix == "" and event == "map_key" and value == "data":
                following = next(events, None)
                if following is not None and following[1] == "start_array":
                    return "data.item"
                break
        raise SourceError("The top-level JSON object has no 'data' array of records.")
    raise SourceError(
        "Expected a JSON array of objects, or an object with a 'data' array of objects."
    )


def _build(event: str, value: Any, events: Iterator[tuple[str, str, Any]]) -> Any:
    builder = ijson.ObjectBuilder()
    builder.event(event, value)
    depth = 1
    for _prefix, event, value in events:
        builder.event(event, value)
        depth += 1 if event in _STARTS else -1 if event in _ENDS else 0
        if depth == 0:
            break
    return builder.value


# --- duplicate external_ids -----------------------------------------------------------


#: The ids' hashes are spread over this many arrays, sorted one at a time: the sort's
#: temporary list of Python ints holds one array's values, never the whole file's.
_BUCKETS = 256
_HASH_BITS = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class Survey:
    """What the first pass over a file found."""

    #: Records and unreadable rows (what the progress display counts to).
    rows: int
    #: The external_ids that occur more than once, and how many records hold one.
    duplicate_ids: frozenset[str] = frozenset()
    duplicate_rows: int = 0


def survey(path: Path, fmt: str, id_field: str | None) -> Survey:
    """Count the file's rows and find its repeated external_ids, streaming; raises
    SourceError early.

    Memory grows with the number of records, by about 10 bytes each: an id is kept as
    its 64-bit hash in an ``array`` (8 bytes, not a Python object, plus the arrays' room
    to grow; the measure for 10 million ids is in the README, made by ``python -m
    bench.push_ids``). Equal hashes
    are found by sorting. A hash seen twice is only a candidate (two ids may share one):
    a second pass, made only when there are candidates, counts the ids themselves whose
    hash is one of them, so the answer is exact.
    """
    buckets = _new_buckets()
    rows = _spread(read_external_ids(path, fmt, id_field), buckets)
    return _findings(path, fmt, id_field, rows, buckets)


def _new_buckets() -> list[array[int]]:
    return [array("Q") for _ in range(_BUCKETS)]


def _spread(values: Iterable[str | None], buckets: list[array[int]]) -> int:
    """Each external_id's hash into its bucket; returns how many values (rows) came."""
    rows = 0
    for value in values:
        rows += 1
        if value is not None:
            digest = hash(value) & _HASH_BITS
            buckets[digest % _BUCKETS].append(digest)
    return rows


def _findings(
    path: Path, fmt: str, id_field: str | None, rows: int, buckets: list[array[int]]
) -> Survey:
    """The repeated external_ids of a file whose ids' hashes are in ``buckets`` (emptied
    on the way): equal hashes found by sorting, then, only if there are some, the ids
    themselves counted in a second pass."""
    candidates: set[int] = set()
    for number in range(_BUCKETS):
        ordered = sorted(buckets[number])
        buckets[number] = array("Q")  # one bucket's sorted copy in memory at a time
        candidates.update(low for low, high in itertools.pairwise(ordered) if low == high)
    if not candidates:
        return Survey(rows)
    counts: Counter[str | None] = Counter()
    for value in read_external_ids(path, fmt, id_field):
        if value is not None and hash(value) & _HASH_BITS in candidates:
            counts[value] += 1
    return _survey_of(rows, counts)


def _survey_of(rows: int, counts: Counter[str | None]) -> Survey:
    """The findings from each external_id's count (None, no external_id, is no id)."""
    repeated = {value: n for value, n in counts.items() if n > 1 and value is not None}
    return Survey(rows, frozenset(repeated), sum(repeated.values()))


@dataclasses.dataclass(frozen=True)
class Cut:
    """Where a CSV file is cut in two for its survey: ``offset``, a byte where a line
    starts, and ``line``, that line's number (the file's first is 1)."""

    offset: int
    line: int


def csv_cut(path: Path, size: int) -> Cut | None:
    """The cut three tenths into a CSV file (at most CUT_MAX_BYTES in), or None."""
    return cut_at(path, min(size * 3 // 10, CUT_MAX_BYTES))


def cut_at(path: Path, near: int) -> Cut | None:
    """The first line start from byte ``near`` on (None: none), and its number: the line
    breaks before it, counted as the file is read (``newline=""``: ``\\r\\n``, ``\\r`` and
    ``\\n`` each end a line)."""
    with path.open("rb") as binary:
        if near > 0:
            binary.seek(near - 1)
            binary.readline()  # to just after the next \n, or the end
        offset = binary.tell()
        if not binary.read(1):
            return None
        binary.seek(0)
        breaks, left, last = 0, offset, b""
        while left:
            block = binary.read(min(left, 1024 * 1024))
            left -= len(block)
            breaks += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            if last == b"\r" and block.startswith(b"\n"):  # a \r\n over two blocks
                breaks -= 1
            last = block[-1:]
    return Cut(offset, breaks + 1)


def survey_after(path: Path, id_field: str | None, offset: int) -> tuple[int, list[array[int]]]:
    """The survey of a CSV file's rows from byte ``offset`` (a line start) on, read
    under the file's header: how many, and their ids' hashes in buckets (made in the
    survey's child process, see :func:`survey_split`)."""
    with _reading(path):
        with _csv_text(path) as text:
            header = io.StringIO()
            csv.writer(header).writerow(next(csv.reader(text), []))
        with path.open("rb") as binary:
            binary.seek(offset)
            rest = io.TextIOWrapper(binary, encoding="utf-8", newline="")
            buckets = _new_buckets()
            lines = itertools.chain([header.getvalue()], rest)
            return _spread(csv_external_ids(lines, id_field), buckets), buckets


# --- chunks ---------------------------------------------------------------------------


#: A line of ``errors.csv``: row, external_id, field, error_code, message.
ErrorLine = tuple[int, str | None, str | None, str, str]


@dataclasses.dataclass(slots=True)
class Chunk:
    """Consecutive records to send in one request, with the rows among them that are
    not sent (``problems``: their lines of ``errors.csv``).

    ``position`` orders every chunk (the outcome files are written in that order);
    ``index`` numbers the chunks that are sent (it goes into the Idempotency-Key).
    ``ids`` keeps each record's external_id, as the service reads and stores it, for
    ``results.csv`` once the records are let go.
    """

    position: int
    index: int
    rows: list[int]
    records: list[dict[str, Any]]
    problems: list[ErrorLine]
    ids: list[str | None]
    #: The request body, when made before the chunk is sent (read ahead, see
    #: :func:`surveyed_chunks`); its records are let go then.
    body: bytes | None = None


def not_sent(
    item: SourceRow, id_field: str | None, duplicate_ids: frozenset[str]
) -> ErrorLine | None:
    """Why a row of the file is not sent, as its line of ``errors.csv`` (None: it is)."""
    if item.record is None:
        return (item.line, item.external_id, None, INVALID, item.problem or "")
    if duplicate_ids:
        value = external_id(item.record, id_field)
        if value is not None and value in duplicate_ids:
            return (item.line, value, id_field, DUPLICATE, duplicate_message(value))
    return None


def iter_chunks(
    rows: Iterable[SourceRow],
    size: int,
    *,
    id_field: str | None = None,
    duplicate_ids: frozenset[str] = frozenset(),
) -> Generator[Chunk, None, None]:
    """Group records ``size`` at a time, lazily (one chunk in memory at a time); a row
    that is not sent (unreadable, or its external_id one of ``duplicate_ids``) goes to
    its chunk's problems."""
    position = index = 0
    chunk_rows: list[int] = []
    records: list[dict[str, Any]] = []
    problems: list[ErrorLine] = []
    for item in rows:
        # The usual row, sent, is known without a call.
        problem = (
            None
            if item.record is not None and not duplicate_ids
            else not_sent(item, id_field, duplicate_ids)
        )
        if problem is not None:
            problems.append(problem)
        elif item.record is not None:
            chunk_rows.append(item.line)
            records.append(item.record)
        if len(records) == size or len(problems) == size:
            yield _chunk(position, index, chunk_rows, records, problems, id_field)
            position += 1
            index += 1 if records else 0
            chunk_rows, records, problems = [], [], []
    if records or problems:
        yield _chunk(position, index, chunk_rows, records, problems, id_field)


def _chunk(
    position: int,
    index: int,
    rows: list[int],
    records: list[dict[str, Any]],
    problems: list[ErrorLine],
    id_field: str | None,
) -> Chunk:
    ids = [external_id(record, id_field) for record in records]
    return Chunk(position, index if records else -1, rows, records, problems, ids)


def idempotency_key(slug: str, index: int, body: bytes) -> str:
    """The same slug, chunk number and bytes give the same key, whatever the run."""
    digest = hashlib.sha256()
    for part in (slug.encode(), str(index).encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return f"push-{digest.hexdigest()}"


def chunk_body(chunk: Chunk) -> bytes:
    """The request body; a record orjson cannot encode becomes a problem of the chunk."""
    try:
        return orjson.dumps({"data": chunk.records})
    except TypeError:
        kept_rows, kept = [], []
        kept_ids: list[str | None] = []
        for row, record, value in zip(chunk.rows, chunk.records, chunk.ids, strict=True):
            try:
                orjson.dumps(record)
            except TypeError as error:
                chunk.problems.append(
                    (row, None, None, INVALID, f"Row {row} cannot be sent as JSON ({error}).")
                )
            else:
                kept_rows.append(row)
                kept.append(record)
                kept_ids.append(value)
        chunk.rows, chunk.records, chunk.ids = kept_rows, kept, kept_ids
        return orjson.dumps({"data": chunk.records})


# --- the HTTP side --------------------------------------------------------------------


def _detail(response: requests.Response) -> tuple[str, str]:
    try:
        detail = orjson.loads(response.content)["detail"]
        return str(detail["code"]), str(detail["message"])
    except Exception:
        return "", response.text[:200].strip()


class Api:
    """The import API over HTTP: one ``requests.Session`` per thread, retries of 429,
    502-504 and connection failures with exponential backoff honouring Retry-After."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        retries: int = 6,
        backoff: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.retries = retries
        self.backoff = backoff
        self.stop = stop or threading.Event()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._wait = WAIT_STEPS[0]

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(
                {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}
            )
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def pause(self, seconds: float) -> None:
        """Sleep, unless the push is being stopped."""
        if self.stop.wait(max(seconds, 0.0)):
            raise PushError("Stopped.")

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after:
            try:
                return min(max(float(retry_after), 0.0), MAX_DELAY)
            except ValueError:
                try:
                    when = parsedate_to_datetime(retry_after).timestamp()
                    return min(max(when - time.time(), 0.0), MAX_DELAY)
                except (TypeError, ValueError):
                    pass
        delay: float = min(self.backoff * 2**attempt, 60.0) * random.uniform(0.5, 1.0)
        return delay

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """The answer to the request, retried while the service is unavailable; raises
        PushError when it stays unavailable for ``retries`` more attempts."""
        problem = ""
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                raise PushError("Stopped.")
            response: requests.Response | None = None
            try:
                response = self._session().request(
                    method,
                    self.url + path,
                    data=body,
                    params=params,
                    headers=headers,
                    timeout=TIMEOUT,
                )
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,  # a stream cut short
            ) as error:
                problem = f"cannot reach {self.url} ({type(error).__name__})"
            else:
                # Only an answer that may be retried is read here (a results stream or a
                # batch is read once, by the caller).
                if response.status_code not in RETRY_STATUSES and response.status_code != 409:
                    return response
                code, message = _detail(response)
                if response.status_code == 409 and code != "request_in_progress":
                    return response
                problem = f"{response.status_code} {code or response.reason}: {message}".strip()
                response.close()
            if attempt < self.retries:
                self.pause(self._delay(attempt, response))
        raise PushError(
            f"The service is unavailable after {self.retries + 1} attempts of "
            f"{method} {path}: {problem}. Nothing more was sent; run the same push again "
            "later (what was already accepted is not sent twice)."
        )

    def poll(self, batch_id: str, slug: str) -> dict[str, Any]:
        """The batch, once done or after the longest wait the service allows."""
        while True:
            wait = self._wait
            # The status and counts alone: the lists are read whole once it is done.
            response = self.call(
                "GET", f"/v1/import/batches/{batch_id}", params={"wait": wait, "inline": 0}
            )
            if (
                response.status_code == 422
                and wait > 0
                and _detail(response)[0] == "invalid_parameter"
            ):
                # The service caps the wait lower: remember the next step for every chunk.
                with self._lock:
                    if self._wait == wait:
                        self._wait = WAIT_STEPS[WAIT_STEPS.index(wait) + 1]
                continue
            batch: dict[str, Any] = self.json(response, slug, (200,))
            if batch["status"] not in DONE:
                # Answered before the wait ran out: the service had no waiting slot free
                # (it says when to ask again), or waits are off.
                if "Retry-After" in response.headers:
                    self.pause(self._delay(0, response))
                elif wait == 0:
                    self.pause(1.0)
            return batch

    def json(self, response: requests.Response, slug: str, expected: Iterable[int]) -> Any:
        if response.status_code not in expected:
            raise refusal(response, slug)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise PushError(
                f"{self.url} answered {response.status_code} with a body that is not JSON; "
                "is --url the import service?"
            ) from None


def refusal(response: requests.Response, slug: str) -> PushError:
    """What an unexpected answer means, as an error to print."""
    code, message = _detail(response)
    status = response.status_code
    if status == 401:
        return PushError(
            f"The service refused the API key (401 {code or 'invalid_api_key'}): "
            "check --api-key or IMPORTER_API_KEY."
        )
    if status == 404 and code == "report_not_found":
        return PushError(f"There is no import report {slug!r} in the API key's org (404).")
    if status == 413:
        return PushError(
            f"The service refused a chunk as too large (413 {code}: {message}); "
            "use a smaller --chunk-size."
        )
    return PushError(f"The service answered {status} {code}: {message}".rstrip(": "))


# --- the outcome of a chunk -----------------------------------------------------------


#: A chunk's lines of ``results.csv``, column by column (RESULT_COLUMNS): built and
#: written a column at a time, at C speed, for the 300,000 lines of a large push.
ResultColumns = tuple[list[int], list[str | None], list[str], list[str], list[str]]


@dataclasses.dataclass(slots=True)
class ChunkOutcome:
    position: int
    #: The chunk's lines of results.csv, as written, and how many.
    results: str = ""
    result_lines: int = 0
    errors: list[ErrorLine] = dataclasses.field(default_factory=list)
    created: int = 0
    updated: int = 0
    failed: int = 0
    replayed: bool = False
    batch_id: str | None = None


class Tally:
    """The counts the progress display shows, updated from every thread."""

    def __init__(self, total: int, on_change: Callable[[Tally], None]) -> None:
        self.total = total
        self.read = self.sent = self.written = self.failed = 0
        self.started = time.monotonic()
        self._on_change = on_change
        self._lock = threading.Lock()

    @property
    def processed(self) -> int:
        return self.written + self.failed

    def add(self, *, read: int = 0, sent: int = 0, written: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.read += read
            self.sent += sent
            self.written += written
            self.failed += failed
            self._on_change(self)


def _changed(changed: Any) -> str:
    """``true``/``false`` as in the API; empty from a service that does not say."""
    return "" if changed is None else str(bool(changed)).lower()


def result_columns(
    rows: list[int], ids: list[str | None], items: list[dict[str, Any]]
) -> ResultColumns:
    """The lines of ``results.csv`` of a chunk whose records are on ``rows``, with
    ``ids`` as their external_ids."""
    column = operator.itemgetter
    indexes = list(map(column("index"), items))
    return (
        list(map(rows.__getitem__, indexes)),
        list(map(ids.__getitem__, indexes)),
        list(map(column("coverbase_id"), items)),
        list(map(column("action"), items)),
        list(map(_changed, map(operator.methodcaller("get", "changed"), items))),
    )


@dataclasses.dataclass(slots=True)
class Sent:
    """A chunk the service accepted, followed until its batch is done and read."""

    chunk: Chunk
    batch: dict[str, Any]
    replayed: bool
    #: (written, failed) as last shown by the progress display.
    shown: tuple[int, int] = (0, 0)

    @property
    def done(self) -> bool:
        return self.batch["status"] in DONE

    def show(self, batch: dict[str, Any], tally: Tally) -> None:
        self.batch = batch
        now = (batch["created_count"] + batch["updated_count"], batch["failed_count"])
        tally.add(written=now[0] - self.shown[0], failed=now[1] - self.shown[1])
        self.shown = now


def send_chunk(api: Api, slug: str, chunk: Chunk, tally: Tally, respond_async: bool) -> Sent:
    """POST one chunk (with its Idempotency-Key); its records are let go once sent."""
    before = len(chunk.problems)
    body = chunk.body if chunk.body is not None else chunk_body(chunk)
    if len(chunk.problems) > before:
        tally.add(failed=len(chunk.problems) - before)
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key(slug, chunk.index, body),
    }
    if respond_async:
        headers["Prefer"] = "respond-async"
    response = api.call("POST", f"/v1/import/{quote(slug, safe='')}", body=body, headers=headers)
    batch = api.json(response, slug, (200, 202, 400))
    if "batch_id" not in batch:  # a 400 of the request itself, not a batch
        raise refusal(response, slug)
    tally.add(sent=len(chunk.rows))
    chunk.records, chunk.body = [], None
    sent = Sent(chunk, batch, replayed=response.headers.get("Idempotent-Replayed") == "true")
    sent.show(batch, tally)
    return sent


def follow(api: Api, slug: str, sent: Sent, tally: Tally) -> Sent:
    """Long-poll the chunk's batch once (until it is done or the wait runs out)."""
    sent.show(api.poll(sent.batch["batch_id"], slug), tally)
    return sent


def read_outcome(api: Api, slug: str, sent: Sent) -> ChunkOutcome:
    """The done batch's results and errors, by row: from its body when they all fit,
    else each list whole in one stream."""
    chunk, batch = sent.chunk, sent.batch
    outcome = ChunkOutcome(chunk.position, errors=list(chunk.problems))
    outcome.failed = len(chunk.problems) + batch["failed_count"]
    outcome.created = batch["created_count"]
    outcome.updated = batch["updated_count"]
    outcome.replayed = sent.replayed
    outcome.batch_id = batch["batch_id"]
    outcome.results, outcome.result_lines = result_lines(api, slug, batch, chunk)
    for item in error_items(api, slug, batch):
        row = chunk.rows[item["index"]]
        outcome.errors.append(
            (row, item["external_id"], item.get("field"), item["error_code"], item["message"])
        )
    outcome.errors.sort(key=lambda error: error[0])  # stable: a row's errors keep their order
    return outcome


def result_lines(api: Api, slug: str, batch: dict[str, Any], chunk: Chunk) -> tuple[str, int]:
    """The chunk's lines of results.csv, and how many: built from the batch body's
    results when they all fit, else spliced from the results stream's lines."""
    inline: list[dict[str, Any]] = batch["results"]
    total: int = batch["results_total"]
    if len(inline) >= total:
        text = io.StringIO()
        CsvWriter(text).write_columns(result_columns(chunk.rows, chunk.ids, inline))
        return text.getvalue(), len(inline)
    # Every record written: the stream's n-th line is the n-th record's, and needs no index.
    every = total == len(chunk.rows)
    fields = RESULT_STREAM_FIELDS.removeprefix("index,") if every else RESULT_STREAM_FIELDS
    response = _stream(api, slug, batch, "results", CSV, fields)
    lines = response.content.decode().split("\r\n")
    if lines[0] != fields or lines[-1]:
        raise ValueError(f"a results stream that is not CSV of {fields}")
    _check_count(len(lines) - 2, total, "results", batch)
    starts = [
        f"{row},{cell}," for row, cell in zip(chunk.rows, CsvWriter.cells(chunk.ids), strict=True)
    ]
    if every:
        spliced = list(map(operator.add, starts, lines[1:-1]))
    else:
        spliced = [
            starts[int(index)] + rest
            for index, _, rest in map(operator.methodcaller("partition", ","), lines[1:-1])
        ]
    return "\r\n".join(spliced) + "\r\n", total


def error_items(api: Api, slug: str, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The done batch's errors: from its body when they all fit, else the errors stream."""
    inline: list[dict[str, Any]] = batch["errors"]
    total: int = batch["errors_total"]
    if len(inline) >= total:
        return inline
    lines = _stream(api, slug, batch, "errors", NDJSON, ERROR_STREAM_FIELDS).content.splitlines()
    _check_count(len(lines), total, "errors", batch)
    items: list[dict[str, Any]] = orjson.loads(b"[" + b",".join(lines) + b"]")
    return items


def _stream(
    api: Api, slug: str, batch: dict[str, Any], kind: str, media: str, fields: str
) -> requests.Response:
    """A done batch's list of ``kind`` whole, in one response of ``media``."""
    response = api.call(
        "GET",
        f"/v1/import/batches/{batch['batch_id']}/{kind}",
        params={"fields": fields},
        headers={"Accept": media},
    )
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(
        media
    ):
        raise refusal(response, slug)
    return response


def _check_count(received: int, total: int, kind: str, batch: dict[str, Any]) -> None:
    if received != total:
        raise PushError(
            f"The service sent {received:,} of the {total:,} {kind} of batch "
            f"{batch['batch_id']}; run the same push again (nothing is sent twice)."
        )


# --- the outcome files ----------------------------------------------------------------


class OutcomeFiles:
    """``results.csv`` and ``errors.csv``, written in row order as chunks finish (a
    chunk's lines wait for the chunks before it), then moved into place at the end.

    The temporary files are opened like any new file (mode 0666 less the umask), not
    with ``tempfile`` (always 0600): the outcome files are as readable as the user's
    other files, by whoever the umask lets read them.
    """

    def __init__(self, folder: Path) -> None:
        self.results_path = folder / RESULTS_CSV
        self.errors_path = folder / ERRORS_CSV
        self._files: list[tuple[IO[str], Path]] = []
        # A chunk's results come as the lines CsvWriter writes; its errors as rows.
        self._results = self._open(folder, RESULT_COLUMNS)
        self._errors = CsvWriter(self._open(folder, ERROR_COLUMNS))
        self._waiting: dict[int, ChunkOutcome] = {}
        self._next = 0
        self.result_lines = self.error_lines = 0

    def _open(self, folder: Path, columns: tuple[str, ...]) -> IO[str]:
        """A temporary outcome file, its header row written."""
        temporary = folder / f".push-{secrets.token_hex(8)}.csv"
        stream = temporary.open("x", encoding="utf-8", newline="")
        self._files.append((stream, temporary))
        CsvWriter(stream).writerow(columns)
        return stream

    @property
    def backlog(self) -> int:
        return len(self._waiting)

    def add(self, outcome: ChunkOutcome) -> None:
        self._waiting[outcome.position] = outcome
        while self._next in self._waiting:
            ready = self._waiting.pop(self._next)
            self._results.write(ready.results)
            self._errors.writerows(ready.errors)
            self.result_lines += ready.result_lines
            self.error_lines += len(ready.errors)
            self._next += 1

    def commit(self) -> None:
        for (stream, temporary), final in zip(
            self._files, (self.results_path, self.errors_path), strict=True
        ):
            stream.close()
            os.replace(temporary, final)
        self._files = []

    def discard(self) -> None:
        for stream, temporary in self._files:
            stream.close()
            temporary.unlink(missing_ok=True)
        self._files = []


# --- progress display -----------------------------------------------------------------


class Display(Protocol):
    def start(self, tally: Tally) -> None: ...

    def update(self, tally: Tally) -> None: ...

    def finish(self, tally: Tally) -> None: ...


class QuietDisplay:
    def start(self, tally: Tally) -> None:
        pass

    def update(self, tally: Tally) -> None:
        pass

    def finish(self, tally: Tally) -> None:
        pass


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    whole = int(seconds + 0.5)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class PlainDisplay:
    """A line at most every ``interval`` seconds, and a last one: for logs and pipes."""

    def __init__(
        self, label: str, echo: Callable[[str], None] = click.echo, interval: float = 5.0
    ) -> None:
        self.label = label
        self.echo = echo
        self.interval = interval
        self._last = 0.0

    def line(self, tally: Tally) -> str:
        elapsed = max(time.monotonic() - tally.started, 1e-9)
        rate = tally.processed / elapsed
        left = max(tally.total - tally.processed, 0)
        eta = left / rate if rate > 0 else None
        percent = 100 * tally.processed // tally.total if tally.total else 100
        return (
            f"{self.label}: {tally.processed:,}/{tally.total:,} records done ({percent}%), "
            f"sent {tally.sent:,}, written {tally.written:,}, failed {tally.failed:,}, "
            f"{rate:,.0f} records/s, elapsed {_clock(elapsed)}, ETA {_clock(eta)}"
        )

    def start(self, tally: Tally) -> None:
        self._last = time.monotonic()

    def update(self, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.echo(self.line(tally))

    def finish(self, tally: Tally) -> None:
        self.echo(self.line(tally))


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rec/s" if speed else "- rec/s", style="progress.data.speed")


class RichDisplay:
    """A live progress bar on a terminal."""

    def __init__(self, label: str, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("sent {task.fields[sent]:,}"),
            TextColumn("[green]written {task.fields[written]:,}"),
            TextColumn("[red]failed {task.fields[failed]:,}"),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(label, total=None, sent=0, written=0, failed=0)

    def start(self, tally: Tally) -> None:
        self.progress.update(self.task, total=tally.total)
        self.progress.start()

    def update(self, tally: Tally) -> None:
        self.progress.update(
            self.task,
            completed=tally.processed,
            sent=tally.sent,
            written=tally.written,
            failed=tally.failed,
        )

    def finish(self, tally: Tally) -> None:
        self.update(tally)
        self.progress.stop()


# --- the push -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PushOptions:
    slug: str
    path: Path
    url: str
    api_key: str
    fmt: str | None = None
    chunk_size: int = CHUNK_SIZE
    concurrency: int = 4
    #: Chunks sent and not yet read back, at most.
    window: int = 16
    retries: int = 6
    backoff: float = 0.5


@dataclasses.dataclass
class PushSummary:
    path: Path
    results_path: Path
    errors_path: Path
    read: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    #: Records not sent because their external_id occurs more than once in the file.
    duplicates: int = 0
    error_lines: int = 0
    chunks: int = 0
    replayed: int = 0
    #: Chunks read and encoded while the survey ran (see :func:`surveyed_chunks`).
    read_ahead: int = 0
    seconds: float = 0.0
    batch_ids: list[str] = dataclasses.field(default_factory=list)

    @property
    def written(self) -> int:
        return self.created + self.updated

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.failed == 0 else EXIT_SOME_FAILED

    def text(self) -> str:
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        chunks = f"{self.chunks:,} chunk{'s' if self.chunks != 1 else ''}"
        lines = [
            f"Read {self.read:,} records from {self.path} and sent them in {chunks}: "
            f"{self.written:,} written ({self.created:,} created, {self.updated:,} updated), "
            f"{self.failed:,} failed, in {self.seconds:.1f} s ({rate:,.0f} records/s)."
        ]
        if self.duplicates:
            lines.append(
                f"{self.duplicates:,} of the records share their external_id with another "
                "record of the file: none of those was sent (duplicate_external_id)."
            )
        if self.replayed == 1 == self.chunks:
            lines.append(
                "The chunk had already been accepted by an earlier run and was not imported "
                "again (the service replayed its answer)."
            )
        elif self.replayed:
            lines.append(
                f"{self.replayed:,} of the chunks had already been accepted by an earlier run "
                "and were not imported again (the service replayed its answers)."
            )
        lines.append(
            f"Results in {self.results_path} and errors ({self.error_lines:,} lines) in "
            f"{self.errors_path}"
        )
        return " ".join(lines)


def check_report(api: Api, slug: str) -> dict[str, Any]:
    """The report (and proof that the key and the slug are good) before anything is sent."""
    response = api.call("GET", f"/v1/import-reports/{quote(slug, safe='')}")
    report: dict[str, Any] = api.json(response, slug, (200,))
    return report


def push_file(options: PushOptions, display: Display | None = None) -> PushSummary:
    """Push the file; returns what happened, or raises PushError when it cannot run."""
    started = time.monotonic()
    display = display or QuietDisplay()
    path = options.path
    fmt = detect_format(path, options.fmt)
    if not path.is_file():
        raise SourceError(f"{path} is not a file.")
    folder = path.resolve().parent
    if path.resolve() in (folder / RESULTS_CSV, folder / ERRORS_CSV):
        raise SourceError(f"{path.name} would be overwritten by the outcome files; rename it.")
    api = Api(options.url, options.api_key, retries=options.retries, backoff=options.backoff)
    try:
        report = check_report(api, options.slug)
        id_field = report.get("mapping", {}).get("external_id")
        found, chunks, read_ahead = surveyed_chunks(path, fmt, id_field, options)
        tally = Tally(found.rows, display.update)
        try:
            files = OutcomeFiles(folder)
        except OSError as error:
            raise PushError(f"Cannot write the outcome files in {folder}: {error}.") from None
        summary = PushSummary(path, files.results_path, files.errors_path)
        summary.duplicates = found.duplicate_rows
        summary.read_ahead = read_ahead
        display.start(tally)
        try:
            # One batch for a file of one chunk (answered when done, in the interactive
            # lane); a larger file's chunks all go to the bulk lane and are followed.
            respond_async = found.rows > options.chunk_size
            _run(api, options, chunks, tally, files, summary, respond_async)
        except BaseException:
            api.stop.set()
            files.discard()
            raise
        finally:
            display.finish(tally)
        try:
            files.commit()
        except OSError as error:
            raise PushError(f"Cannot write the outcome files in {folder}: {error}.") from None
    finally:
        api.close()
    summary.read = tally.read
    summary.error_lines = files.error_lines
    summary.seconds = time.monotonic() - started
    return summary


def surveyed_chunks(
    path: Path, fmt: str, id_field: str | None, options: PushOptions
) -> tuple[Survey, Iterator[Chunk], int]:
    """The survey's findings, the file's chunks, and how many of them were read ahead.

    On Linux, a CSV file of more than SPLIT_FROM_BYTES is cut in two (:func:`survey_split`):
    this process reads the first part, the survey's child process the second. Otherwise a
    file of at most ONE_PASS_BYTES is read once (:func:`read_once`). A larger one is
    surveyed first; on Linux, the survey runs in a forked child process while this one
    reads the first chunks and makes their request bodies, as if no external_id repeated
    (at most ``window`` chunks, READ_AHEAD_BYTES of bodies): the two passes over the file
    overlap on two cores, and the first chunks are ready to send when the survey ends,
    which is when sending may start. Elsewhere the survey runs first, here.

    Whenever repeated external_ids are found, the chunks read ahead are dropped and the
    file is read again from its start, so the chunks are always the file's alone.
    """
    size = options.chunk_size

    def the_files_chunks(duplicate_ids: frozenset[str]) -> Generator[Chunk, None, None]:
        rows = read_rows(path, fmt, id_field)
        return iter_chunks(rows, size, id_field=id_field, duplicate_ids=duplicate_ids)

    file_size = path.stat().st_size
    split = fmt == "csv" and SURVEY_APART and file_size > SPLIT_FROM_BYTES
    cut = csv_cut(path, file_size) if split else None
    rest: Generator[Chunk, None, None] | None = None  # the chunks not read yet
    if cut is not None:
        found, read, rest = survey_split(path, id_field, options, cut, the_files_chunks)
    elif file_size <= ONE_PASS_BYTES:
        found, read = read_once(the_files_chunks(frozenset()))
    elif SURVEY_APART:
        found, read, rest = _survey_apart(path, fmt, id_field, options, the_files_chunks)
    else:
        found, read, rest = survey(path, fmt, id_field), [], the_files_chunks(frozenset())
    if found.duplicate_ids:
        if rest is not None:
            rest.close()
        return found, the_files_chunks(found.duplicate_ids), 0
    return found, itertools.chain(read, rest or ()), len(read)


def _hold_body(chunk: Chunk) -> int:
    """Make the chunk's request body now and let its records go; returns its size."""
    if not chunk.records:
        return 0
    chunk.body = chunk_body(chunk)
    chunk.records = []
    return len(chunk.body)


def read_once(chunks: Iterator[Chunk]) -> tuple[Survey, list[Chunk]]:
    """Every chunk of a file read as if no external_id repeated, with its body made, and
    what a survey would find, from the chunks' own external_ids (counted before a record
    that cannot be sent as JSON leaves its chunk, as the survey counts it)."""
    read: list[Chunk] = []
    counts: Counter[str | None] = Counter()
    rows = 0
    for chunk in chunks:
        counts.update(chunk.ids)
        rows += len(chunk.rows) + len(chunk.problems)
        _hold_body(chunk)
        read.append(chunk)
    return _survey_of(rows, counts), read


def survey_split(
    path: Path,
    id_field: str | None,
    options: PushOptions,
    cut: Cut,
    the_files_chunks: Callable[[frozenset[str]], Generator[Chunk, None, None]],
) -> tuple[Survey, list[Chunk], Generator[Chunk, None, None]]:
    """The survey of a CSV file cut in two, and the chunks read meanwhile (with the
    rest of the file's, to read on).

    A forked child surveys the rows from the cut on, while this process reads the
    file's chunks from its start, as if no external_id repeated, making their request
    bodies and spreading the ids of the rows before the cut over the survey's buckets;
    past the cut, it reads ahead while the child works (at most ``window`` chunks,
    READ_AHEAD_BYTES of bodies). The two parts meet only if a row starts on the cut's
    line: if the line falls inside a row (a quoted field over several lines) or holds
    none, the child's part is dropped and the whole file surveyed here.
    """
    # A process of its own, its findings read by this thread between two chunks (a
    # pool's result thread would wait for this one's turns to take them off the pipe).
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_survey_after_into, args=(sending, path, id_field, cut.offset), daemon=True
    )
    child.start()
    sending.close()
    try:
        ahead = the_files_chunks(frozenset())  # as if no external_id repeated
        buckets = _new_buckets()
        read: list[Chunk] = []
        rows = held = 0
        first_after: int | None = None  # the line of the first row from the cut on
        while first_after is None or (
            not receiving.poll() and len(read) < options.window and held < READ_AHEAD_BYTES
        ):
            chunk = next(ahead, None)
            if chunk is None:
                break
            if first_after is None:
                before, first_after = _before_the_cut(chunk, cut.line, buckets)
                rows += before
            held += _hold_body(chunk)
            read.append(chunk)
            if first_after is not None and first_after != cut.line:
                break  # no row starts on the cut's line
        met = first_after is not None and first_after == cut.line
        if met:
            try:
                outcome = receiving.recv()
            except EOFError:  # the child died without a word
                met = False
            else:
                if isinstance(outcome, BaseException):
                    raise outcome
                rest_rows, rest_buckets = outcome
    finally:
        child.terminate()
        child.join()
        receiving.close()
    if not met:
        return survey(path, "csv", id_field), read, ahead
    for mine, theirs in zip(buckets, rest_buckets, strict=True):
        mine.extend(theirs)
    return _findings(path, "csv", id_field, rows + rest_rows, buckets), read, ahead


def _survey_after_into(
    connection: Connection, path: Path, id_field: str | None, offset: int
) -> None:
    """The child's part of :func:`survey_split`: :func:`survey_after`'s findings, or
    what it raised, sent to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    outcome: tuple[int, list[array[int]]] | Exception
    try:
        outcome = survey_after(path, id_field, offset)
    except Exception as error:
        outcome = error
    connection.send(outcome)
    connection.close()


def _before_the_cut(chunk: Chunk, line: int, buckets: list[array[int]]) -> tuple[int, int | None]:
    """Spread the ids of the chunk's rows before ``line`` over the buckets; returns how
    many rows that was, and the line of its first row from ``line`` on (None: none)."""
    problems = [problem[0] for problem in chunk.problems]
    records = bisect.bisect_left(chunk.rows, line)
    rows = _spread(chunk.ids[:records], buckets) + sum(1 for row in problems if row < line)
    after = chunk.rows[records : records + 1] + [row for row in problems if row >= line]
    return rows, min(after, default=None)


def _survey_apart(
    path: Path,
    fmt: str,
    id_field: str | None,
    options: PushOptions,
    the_files_chunks: Callable[[frozenset[str]], Generator[Chunk, None, None]],
) -> tuple[Survey, list[Chunk], Generator[Chunk, None, None]]:
    """The survey made in a forked child, and the chunks read meanwhile (with the rest
    of the file's, to read on)."""
    # The child only reads the file (no lock another thread may hold), and is ended
    # with the pool whatever happens here (Ctrl-C included).
    pool = multiprocessing.get_context("fork").Pool(1)
    try:
        surveying = pool.apply_async(survey, (path, fmt, id_field))
        ahead = the_files_chunks(frozenset())  # as if no external_id repeated
        read: list[Chunk] = []
        held = 0
        while not surveying.ready() and len(read) < options.window and held < READ_AHEAD_BYTES:
            chunk = next(ahead, None)
            if chunk is None:
                break
            held += _hold_body(chunk)
            read.append(chunk)
        found: Survey = surveying.get()
    finally:
        pool.terminate()
        pool.join()
    return found, read, ahead


def _run(
    api: Api,
    options: PushOptions,
    chunks: Iterator[Chunk],
    tally: Tally,
    files: OutcomeFiles,
    summary: PushSummary,
    respond_async: bool,
) -> None:
    """Send, wait and read at once, as a pipeline driven from this thread:

    * up to ``concurrency`` chunks being sent, and up to ``window`` chunks sent and not
      yet read back (so the service always has the next chunks queued, and memory stays
      bounded: a chunk keeps only its row numbers once sent);
    * one long-poll at a time, of the oldest chunk not known to be done (chunks finish
      about in order; each later one is then found done at once), so a push holds at
      most one of the service's waiting slots;
    * up to ``concurrency`` done chunks being read back, each list in one stream.

    Finished chunks go to the outcome files in file order.
    """
    pool = ThreadPoolExecutor(max_workers=2 * options.concurrency + 1, thread_name_prefix="push")
    tasks: dict[Future[Any], str] = {}  # in flight: "send", "poll" or "read"
    to_poll: list[tuple[int, Sent]] = []  # a heap by position: the oldest first
    to_read: list[tuple[int, Sent]] = []
    open_chunks = 0  # sent or being sent, not yet read back
    more = True

    def running(kind: str) -> int:
        return sum(1 for task in tasks.values() if task == kind)

    def collect(outcome: ChunkOutcome) -> None:
        files.add(outcome)
        summary.created += outcome.created
        summary.updated += outcome.updated
        summary.failed += outcome.failed
        summary.replayed += outcome.replayed
        if outcome.batch_id:
            summary.batch_ids.append(outcome.batch_id)

    def arrived(sent: Sent) -> None:
        heapq.heappush(to_read if sent.done else to_poll, (sent.chunk.position, sent))

    try:
        while True:
            while more and running("send") < options.concurrency and open_chunks < options.window:
                chunk = next(chunks, None)
                if chunk is None:
                    more = False
                    break
                # Counted a chunk at a time (not a row at a time: the display's lock).
                tally.add(read=len(chunk.rows) + len(chunk.problems), failed=len(chunk.problems))
                if not chunk.rows:
                    collect(
                        ChunkOutcome(
                            chunk.position, errors=list(chunk.problems), failed=len(chunk.problems)
                        )
                    )
                    continue
                summary.chunks += 1
                open_chunks += 1
                task = pool.submit(send_chunk, api, options.slug, chunk, tally, respond_async)
                tasks[task] = "send"
            if to_poll and not running("poll"):
                _, sent = heapq.heappop(to_poll)
                tasks[pool.submit(follow, api, options.slug, sent, tally)] = "poll"
            while to_read and running("read") < options.concurrency:
                _, sent = heapq.heappop(to_read)
                tasks[pool.submit(read_outcome, api, options.slug, sent)] = "read"
            if not tasks:
                break
            done, _ = wait(tasks, return_when=FIRST_COMPLETED)
            for task in done:
                kind = tasks.pop(task)
                try:
                    result: Any = task.result()
                except (KeyError, TypeError, ValueError, IndexError) as error:
                    raise PushError(
                        "An answer of the service was not understood "
                        f"({type(error).__name__}: {error})."
                    ) from error
                if kind == "read":
                    collect(result)
                    open_chunks -= 1
                else:
                    arrived(result)
    except BaseException as error:
        api.stop.set()
        # On Ctrl-C, don't wait for the requests in flight (their chunks are safe to resend).
        pool.shutdown(wait=not isinstance(error, KeyboardInterrupt), cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# --- the command ----------------------------------------------------------------------


@click.command("push")
@click.argument("slug")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", default=None, help="The service [IMPORTER_URL, http://127.0.0.1:8000].")
@click.option("--api-key", default=None, help="The org's API key [IMPORTER_API_KEY].")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="The file's format (default: from its extension).",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(1, 100_000),
    default=CHUNK_SIZE,
    show_default=True,
    help="Records per request.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Requests in flight at once.",
)
@click.option(
    "--window",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Chunks sent and not yet read back, at most (the service's queue of this push).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=6,
    show_default=True,
    help="Retries of a request answered 429/503 or not answered, before giving up.",
)
def push_command(
    slug: str,
    file: Path,
    url: str | None,
    api_key: str | None,
    fmt: str | None,
    chunk_size: int,
    concurrency: int,
    window: int,
    retries: int,
) -> None:
    """Send the records of FILE (CSV, NDJSON or JSON) to the import report SLUG.

    Writes results.csv and errors.csv next to FILE, by the records' row numbers in it.
    Exit code 0: every record was written; 1: some failed; 2: the push could not run.
    Running the same push again sends nothing twice.
    """
    settings = ClientSettings.from_env()
    key = api_key or settings.api_key
    if not key:
        raise click.UsageError("No API key: pass --api-key or set IMPORTER_API_KEY.")
    options = PushOptions(
        slug=slug,
        path=file,
        url=url or settings.url,
        api_key=key,
        fmt=detect_format(file, fmt),
        chunk_size=chunk_size,
        concurrency=concurrency,
        window=window,
        retries=retries,
    )
    click.echo(
        f"Pushing {file} ({options.fmt}) to {options.url.rstrip('/')}/v1/import/{slug}: "
        f"chunks of {chunk_size:,} records, {concurrency} at a time, up to {window} in flight."
    )
    display: Display
    if sys.stdout.isatty():
        display = RichDisplay(file.name, Console(file=sys.stdout))
    else:
        display = PlainDisplay(file.name)
    try:
        summary = push_file(options, display)
    except PushError as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(EXIT_CANNOT_RUN) from None
    except KeyboardInterrupt:
        click.echo(
            "Interrupted. Run the same push again to finish: chunks already accepted are "
            "not sent twice.",
            err=True,
        )
        raise SystemExit(130) from None
    click.echo(summary.text())
    raise SystemExit(summary.exit_code)
