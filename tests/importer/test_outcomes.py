"""How a batch's stored results, errors and warnings are read: a page decodes only its
own items, a stream reads each chunk once and holds one chunk at a time."""

from __future__ import annotations

import csv
import gc
import io
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importer import outcomes


def results(start: int, count: int) -> list[list[Any]]:
    return [[n, f"EXT-{n:07d}", f"ven_{n:032x}", "created"] for n in range(start, start + count)]


@pytest.mark.parametrize("layout", ["one item a line", "one line (stored before)"])
@pytest.mark.parametrize(
    ("skip", "count"), [(0, 3), (3, 2), (8, 5), (10, 1), (0, None), (7, None), (0, 0)]
)
def test_stored_items_are_the_asked_slice(layout: str, skip: int, count: int | None) -> None:
    items = results(0, 10)
    blob = outcomes.encode(items) if layout == "one item a line" else orjson.dumps(items)

    expected = items[skip:] if count is None else items[skip : skip + count]
    assert outcomes.stored_items(blob, skip, count) == expected
    assert orjson.loads(blob) == items  # either way, a plain JSON array


def test_an_empty_list_is_stored_as_an_empty_array() -> None:
    assert outcomes.encode([]) == b"[]"
    assert outcomes.stored_items(b"[]", 0, 5) == []
    assert outcomes.stored_items(None) == []


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many items each decode of stored items returned, in order."""
    sizes: list[int] = []
    decode = outcomes._decode

    def counting(data: bytes) -> list[Any]:
        items = decode(data)
        sizes.append(len(items))
        return items

    monkeypatch.setattr(outcomes, "_decode", counting)
    return sizes


def test_paging_a_5000_result_chunk_decodes_each_result_once(decoded: list[int]) -> None:
    items = results(0, 5000)
    blob = outcomes.encode(items)

    pages = [outcomes.stored_items(blob, offset, 200) for offset in range(0, 5000, 200)]

    assert [item for page in pages for item in page] == items
    # 25 pages of 200: 5,000 results decoded, not 25 x 5,000.
    assert decoded == [200] * 25


class BlobSessions:
    """Stands in for ``Database.session`` in :func:`outcomes.stream`: each session's
    one query answers the next chunk's list, made only when it is asked for."""

    def __init__(self, chunks: int, per_chunk: int, kind: str) -> None:
        self.chunks, self.per_chunk, self.kind = chunks, per_chunk, kind
        self.made = 0

    def _next_blob(self) -> bytes:
        start = self.made * self.per_chunk
        self.made += 1
        if self.kind == "results":
            return outcomes.encode(results(start, self.per_chunk))
        return outcomes.encode(
            [
                {
                    "index": n,
                    "external_id": f"EXT-{n}",
                    "field": "Website",
                    "error_code": "invalid_field_value",
                    "message": "Not a valid URL.",
                }
                for n in range(start, start + self.per_chunk)
            ]
        )

    @contextmanager
    def session(self) -> Iterator[Any]:
        sessions = self

        class OneQuery:
            def scalar(self, _statement: Any) -> bytes:
                return sessions._next_blob()

        yield OneQuery()


@pytest.mark.parametrize("kind", ["results", "errors"])
@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_a_stream_reads_each_chunk_once_in_order(
    decoded: list[int], kind: outcomes.Kind, fmt: outcomes.StreamFormat
) -> None:
    sessions = BlobSessions(chunks=3, per_chunk=1000, kind=kind)

    body = b"".join(outcomes.stream(sessions.session, [11, 12, 13], kind, fmt))

    assert sessions.made == 3
    lines = body.decode().splitlines()
    if fmt == "csv":
        assert lines[0] == ",".join(outcomes.FIELDS[kind])
        indexes = [int(line.split(",", 1)[0]) for line in lines[1:]]
    else:
        indexes = [orjson.loads(line)["index"] for line in lines]
    assert indexes == list(range(3000))
    if kind == "errors" and fmt == "ndjson":
        assert decoded == []  # problems are copied line by line, not decoded
    else:
        assert decoded == [1000, 1000, 1000]


def _peak_while_streaming(chunks: int, fmt: outcomes.StreamFormat) -> int:
    sessions = BlobSessions(chunks=chunks, per_chunk=5000, kind="results")
    gc.collect()
    tracemalloc.start()
    try:
        sent = 0
        for piece in outcomes.stream(sessions.session, list(range(chunks)), "results", fmt):
            sent += len(piece)  # as a server writes it out and lets it go
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sessions.made == chunks and sent > chunks * 5000 * 40
    return peak


@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_a_streams_memory_is_one_chunk_whatever_the_batch_size(
    fmt: outcomes.StreamFormat,
) -> None:
    small = _peak_while_streaming(2, fmt)  # 10,000 results
    large = _peak_while_streaming(20, fmt)  # 100,000 results

    # Ten times the results, the same peak (a list held whole would be ~10x).
    assert large < small * 1.5


#: Results of every kind a packed chunk holds: created, updated, unchanged.
PACKED_RESULTS = [
    [n, f"EXT-{n}", f"ven_{n * 7919:032x}", "created" if n % 3 == 0 else "updated", n % 3 != 2]
    for n in range(300)
]


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(
        st.sampled_from(["index", "coverbase_id", "action", "changed", "status"]),
        unique=True,
        min_size=1,
    ),
    fmt=st.sampled_from(["ndjson", "csv"]),
)
def test_a_packed_chunks_stream_holds_the_fields_asked_for_in_their_order(
    names: list[str], fmt: outcomes.StreamFormat
) -> None:
    blob = outcomes.pack_results(PACKED_RESULTS)
    assert blob.startswith(outcomes._PACKED)

    @contextmanager
    def session() -> Iterator[Any]:
        class OneQuery:
            def scalar(self, _statement: Any) -> bytes:
                return blob

        yield OneQuery()

    body = b"".join(outcomes.stream(session, [1], "results", fmt, names)).decode()

    expected = [
        {
            "index": index,
            "coverbase_id": coverbase_id,
            "action": action,
            "changed": changed,
            "status": "success",
        }
        for index, _external_id, coverbase_id, action, changed in PACKED_RESULTS
    ]
    if fmt == "ndjson":
        assert [orjson.loads(line) for line in body.splitlines()] == [
            {name: item[name] for name in names} for item in expected
        ]
        return
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[0] == names
    assert rows[1:] == [
        [str(item[name]).lower() if name == "changed" else str(item[name]) for name in names]
        for item in expected
    ]
