"""Reading a batch's outcome: the response body, pages of results, errors, warnings,
and each of those lists whole in one stream (NDJSON or CSV).

A batch's per-record outcome is stored per chunk (see ``ImportChunk``); since
chunks cover contiguous, ordered index ranges, a page is read by skipping whole
chunks by their counts and reading only the chunks the page overlaps.

Each chunk's errors and warnings are stored by :func:`encode` as a JSON array with one
item per line, so that a page decodes only its own items (a page of 200 from a
5,000-item chunk splits the lines up to its end and decodes 200, not 5,000), and a
stream copies problems line by line without decoding them. A list stored before that
layout (one line) is still read, decoded whole.

A chunk's results are packed in 21 bytes a record (:func:`pack_results`): the index,
the action and the object id's 128 bits. Rows of one size, so a page unpacks only its
own; the external_id is the object's own, read back from the object table for the
items being answered (one indexed read per page or per streamed chunk; none for a
stream asked for without it, ``?fields=``). A stream of packed results is built column
by column, each line from a template. A dry run,
whose records may have no object, keeps its results as :func:`encode` lists of
``[index, external_id, coverbase_id, action]``, as every chunk did before.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import catalog
from importer.collector import gc_paused
from importer.db import rows_with_keys, unix
from importer.models import OBJECT_TABLES, BatchStatus, ImportBatch, ImportChunk
from importer.safe_csv import CsvWriter

Kind = Literal["results", "errors", "warnings"]
KINDS: tuple[Kind, ...] = ("results", "errors", "warnings")

_COUNT_COLUMNS = {
    "results": ImportChunk.created_count + ImportChunk.updated_count,
    "errors": ImportChunk.error_count,
    "warnings": ImportChunk.warning_count,
}
_BLOB_COLUMNS = {
    "results": ImportChunk.results,
    "errors": ImportChunk.errors,
    "warnings": ImportChunk.warnings,
}


#: The fields of an item, in the order of a CSV stream's columns.
RESULT_FIELDS = ("index", "external_id", "coverbase_id", "action", "changed", "status")
PROBLEM_FIELDS = ("index", "external_id", "field", "error_code", "message")
FIELDS: dict[Kind, tuple[str, ...]] = {
    "results": RESULT_FIELDS,
    "errors": PROBLEM_FIELDS,
    "warnings": PROBLEM_FIELDS,
}

#: The streamed media types, by the short name this module uses.
NDJSON, CSV = "application/x-ndjson", "text/csv"
StreamFormat = Literal["ndjson", "csv"]

_LINES_START = b"[\n"


def encode(items: Sequence[Any]) -> bytes:
    """A chunk's results, errors or warnings as stored: a JSON array, one item a line."""
    if not items:
        return b"[]"
    return _LINES_START + b",\n".join([orjson.dumps(item) for item in items]) + b"\n]"


def _decode(data: bytes) -> list[Any]:
    """Every decode of stored items goes through here (tests count what it decodes)."""
    items: list[Any] = orjson.loads(data)
    return items


def _item_lines(blob: bytes, skip: int, count: int | None) -> list[bytes]:
    """Lines ``skip`` to ``skip + count`` of an :func:`encode`-d list, each one item's
    JSON (a trailing comma left on all but the list's last); only the lines up to the
    last wanted one are split off."""
    if count is None:
        lines = blob.split(b"\n")
        wanted = lines[1 + skip : -1]
    else:
        lines = blob.split(b"\n", 1 + skip + count)
        wanted = lines[1 + skip : 1 + skip + count]
        if wanted and wanted[-1] == b"]":  # fewer items than asked for
            wanted.pop()
    return wanted


def stored_items(blob: bytes | None, skip: int = 0, count: int | None = None) -> list[Any]:
    """Items ``[skip, skip + count)`` of a stored list (all from ``skip`` with no count),
    decoding only those. Packed results come without their external_ids (see
    :func:`with_external_ids`)."""
    if not blob:
        return []
    if blob.startswith(_PACKED):
        return unpack_results(blob, skip, None if count is None else skip + count)
    if not blob.startswith(_LINES_START):  # the layout before one item a line
        items = _decode(blob)
        return items[skip:] if count is None else items[skip : skip + count]
    wanted = _item_lines(blob, skip, count)
    if not wanted:
        return []
    return _decode(b"[" + b"".join(wanted).rstrip(b",") + b"]")


#: Packed results start with a NUL byte, which JSON never does.
_PACKED = b"\x00"
#: index, what the record did, the object id's 32 hex digits as 16 bytes.
_RESULT_ROW = struct.Struct("<IB16s")
#: What a record did, as packed: 0 for an update that changed a value (every update,
#: in results packed before ``changed`` existed), 1 created, 2 an update that changed
#: nothing.
_UPDATED, _CREATED, _UNCHANGED = 0, 1, 2
_BASE_BY_PREFIX = {base.id_prefix: base.name for base in catalog.CATALOG.values()}


def pack_results(results: Sequence[Sequence[Any]]) -> bytes:
    """A chunk's results (``[index, external_id, coverbase_id, action, changed]`` each,
    of one base object) as stored: packed when every record has its object, else JSON."""
    prefix: str | None = None
    rows = bytearray()
    try:
        for index, _external_id, object_id, action, changed in results:
            head, _, digits = str(object_id).partition("_")
            if object_id is None or len(digits) != 32 or head != (prefix or head):
                raise ValueError(object_id)
            prefix = head
            did = _CREATED if action == "created" else _UPDATED if changed else _UNCHANGED
            rows += _RESULT_ROW.pack(index, did, bytes.fromhex(digits))
    except (ValueError, struct.error):
        return encode(results)
    if prefix is None:
        return encode(results)
    head_bytes = prefix.encode()
    return _PACKED + bytes([len(head_bytes)]) + head_bytes + bytes(rows)


def unpack_results(blob: bytes, start: int = 0, stop: int | None = None) -> list[list[Any]]:
    """Packed results ``[start:stop]`` as ``[index, None, coverbase_id, action, changed]`` lists
    (the external_id is read by :func:`with_external_ids`). Rows have one size, so only
    the rows asked for are unpacked."""
    size = blob[1]
    prefix = blob[2 : 2 + size].decode() + "_"
    rows = memoryview(blob)[2 + size :]
    width = _RESULT_ROW.size
    first, last = slice(start, stop).indices(len(rows) // width)[:2]
    return _unpack(prefix, rows[first * width : last * width])


def _unpack(prefix: str, rows: memoryview) -> list[list[Any]]:
    """Every unpack of stored results goes through here (tests count what it unpacks)."""
    return [
        [
            index,
            None,
            prefix + raw.hex(),
            "created" if did == _CREATED else "updated",
            did != _UNCHANGED,
        ]
        for index, did, raw in _RESULT_ROW.iter_unpack(rows)
    ]


def with_external_ids(session: Session, stored: list[list[Any]]) -> list[list[Any]]:
    """Fill in the external_ids packed results leave out, from the objects themselves."""
    missing: dict[str, list[str]] = {}
    for item in stored:
        external_id, object_id = item[1], item[2]
        if external_id is None and object_id:
            base = _BASE_BY_PREFIX.get(object_id.partition("_")[0])
            if base is not None:
                missing.setdefault(base, []).append(object_id)
    if not missing:
        return stored
    found: dict[str, str] = {}
    for base, object_ids in missing.items():
        found.update(_external_ids(session, base, object_ids))
    for item in stored:
        if item[1] is None and item[2]:
            item[1] = found.get(item[2])
    return stored


def _external_ids(session: Session, base: str, object_ids: list[str]) -> dict[str, str]:
    """The external_ids of these objects of ``base``, by object id (one indexed read)."""
    return dict(rows_with_keys(session, OBJECT_TABLES[base], "id", object_ids, ["external_id"]))


def _packed_columns(session: Session, blob: bytes, names: tuple[str, ...]) -> list[list[Any]]:
    """A chunk's packed results as the columns ``names`` (the values each item of the
    API holds), built column by column; the external_ids, when asked for, read from the
    objects."""
    size = blob[1]
    head = blob[2 : 2 + size].decode()
    rows = list(_RESULT_ROW.iter_unpack(memoryview(blob)[2 + size :]))
    ids = [f"{head}_{raw.hex()}" for _index, _did, raw in rows]
    columns: dict[str, list[Any]] = {"coverbase_id": ids}
    for name in names:
        if name == "index":
            columns[name] = [row[0] for row in rows]
        elif name == "action":
            columns[name] = ["created" if row[1] == _CREATED else "updated" for row in rows]
        elif name == "changed":
            columns[name] = [row[1] != _UNCHANGED for row in rows]
        elif name == "status":
            columns[name] = ["success"] * len(rows)
        elif name == "external_id":
            base = _BASE_BY_PREFIX.get(head)
            found = _external_ids(session, base, ids) if base is not None else {}
            columns[name] = list(map(found.get, ids))
    return [columns[name] for name in names]


#: Each field of a packed result in a line of a stream (NDJSON, CSV), as a format
#: field of the result's values: {0} the index, {1} the object id's hex digits, {2}
#: the action, {3} changed (``true``/``false``); ``{head}`` is the ids' prefix. None
#: needs quoting or escaping: numbers, letters, digits and ``_``.
_PACKED_FIELDS = {
    "index": ("{0}", "{0}"),
    "coverbase_id": ('"{head}_{1}"', "{head}_{1}"),
    "action": ('"{2}"', "{2}"),
    "changed": ("{3}", "{3}"),
    "status": ('"success"', "success"),
}
#: The action and ``changed`` of each packed ``did`` (_UPDATED, _CREATED, _UNCHANGED).
_ACTIONS = ("updated", "created", "updated")
_CHANGED = ("true", "true", "false")


def _packed_lines(blob: bytes, names: tuple[str, ...], fmt: StreamFormat) -> bytes:
    """A chunk's packed results as lines of a stream, the fields ``names`` (none of
    them ``external_id``) written from each packed row at once: the same bytes as
    :func:`_packed_ndjson` and :func:`_packed_csv` write, for half their CPU."""
    size = blob[1]
    head = blob[2 : 2 + size].decode()
    if fmt == "ndjson":
        line = "{{" + ",".join(f'"{name}":{_PACKED_FIELDS[name][0]}' for name in names) + "}}\n"
    else:
        line = ",".join(_PACKED_FIELDS[name][1] for name in names) + "\r\n"
    fill = line.replace("{head}", head).format
    rows = _RESULT_ROW.iter_unpack(memoryview(blob)[2 + size :])
    return "".join(
        [fill(index, raw.hex(), _ACTIONS[did], _CHANGED[did]) for index, did, raw in rows]
    ).encode()


def _packed_ndjson(columns: list[list[Any]], names: tuple[str, ...]) -> bytes:
    """NDJSON lines of result columns, each as ``orjson`` would write its item."""
    rendered = []
    for name, column in zip(names, columns, strict=True):
        if name == "index":
            rendered.append(list(map(str, column)))
        elif name == "changed":
            rendered.append(["true" if value else "false" for value in column])
        elif name == "external_id":  # any text: escaped as JSON
            rendered.append([orjson.dumps(value).decode() for value in column])
        else:  # ids, actions and statuses: letters, digits and _ only
            rendered.append([f'"{value}"' for value in column])
    line = "{" + ",".join(f'"{name}":%s' for name in names) + "}\n"
    return "".join([line % values for values in zip(*rendered, strict=True)]).encode()


def _packed_csv(columns: list[list[Any]], names: tuple[str, ...]) -> bytes:
    """CSV rows of result columns (``changed`` as ``true``/``false``, as in the JSON)."""
    if "changed" in names:
        at = names.index("changed")
        columns[at] = ["true" if value else "false" for value in columns[at]]
    text = io.StringIO()
    CsvWriter(text).write_columns(columns)
    return text.getvalue().encode()


def _result_item(stored: list[Any]) -> dict[str, Any]:
    index, external_id, coverbase_id, action = stored[:4]
    return {
        "index": index,
        "external_id": external_id,
        "coverbase_id": coverbase_id,
        "action": action,
        # Results stored before ``changed`` existed: every update then wrote its row.
        "changed": stored[4] if len(stored) > 4 else True,
        "status": "success",
    }


def total(batch: ImportBatch, kind: Kind) -> int:
    if kind == "results":
        return batch.created_count + batch.updated_count
    if kind == "errors":
        return batch.error_count
    return batch.warning_count


def page(
    session: Session, batch_id: str, kind: Kind, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Items ``[offset, offset + limit)`` of a batch's results, errors or warnings, by index."""
    if limit <= 0:
        return []
    counts = session.execute(
        sa.select(ImportChunk.id, _COUNT_COLUMNS[kind])
        .where(ImportChunk.batch_id == batch_id)
        .order_by(ImportChunk.position)
    ).all()
    wanted: list[tuple[int, int]] = []  # (chunk id, offset of the page's start within it)
    seen = 0
    for chunk_id, count in counts:
        if count and seen + count > offset and seen < offset + limit:
            wanted.append((chunk_id, max(offset - seen, 0)))
        seen += count
        if seen >= offset + limit:
            break
    if not wanted:
        return []
    blobs = dict(
        session.execute(
            sa.select(ImportChunk.id, _BLOB_COLUMNS[kind]).where(
                ImportChunk.id.in_([chunk_id for chunk_id, _ in wanted])
            )
        ).all()
    )
    items: list[Any] = []
    for chunk_id, skip in wanted:
        items.extend(stored_items(blobs[chunk_id], skip, limit - len(items)))
    if kind == "results":
        return [_result_item(item) for item in with_external_ids(session, items)]
    return items


def chunks_holding(session: Session, batch_id: str, kind: Kind) -> list[int]:
    """The ids of the batch's chunks that hold items of ``kind``, in index order."""
    return list(
        session.scalars(
            sa.select(ImportChunk.id)
            .where(ImportChunk.batch_id == batch_id, _COUNT_COLUMNS[kind] > 0)
            .order_by(ImportChunk.position)
        )
    )


def stream(
    open_session: Callable[[], AbstractContextManager[Session]],
    chunk_ids: Sequence[int],
    kind: Kind,
    fmt: StreamFormat,
    names: Sequence[str] | None = None,
) -> Iterator[bytes]:
    """The whole list, as NDJSON lines or CSV (a header, then a row per item), in index
    order. Each chunk's list is read once, in a short session of its own, and turned
    into one piece of the body: memory is bounded by one chunk whatever the batch's
    size, and no transaction stays open while a slow client reads.

    ``names``: the item fields to send, in this order (default: all of ``FIELDS``).
    Results without ``external_id`` skip reading the objects' external_ids.
    """
    chosen = tuple(names) if names else FIELDS[kind]
    if fmt == "csv":
        yield _csv_rows([chosen])
    for chunk_id in chunk_ids:
        piece = _stream_piece(open_session, chunk_id, kind, fmt, chosen)
        if piece:
            yield piece
        del piece


# A chunk's 5,000 results are built as some 20,000 short-lived objects without cycles:
# left to the collector, which also rescans the older objects as they pile up, they
# made the pieces cost 1.5-1.8 x their time (60 pieces of 5,000 results: 0.42 against
# 0.23-0.28 s of CPU, in a process holding the web app's 115,000 objects). Paused
# while one piece is built, never across a yield (the collector is the process's,
# shared by its threads; importer.collector).
@gc_paused()
def _stream_piece(
    open_session: Callable[[], AbstractContextManager[Session]],
    chunk_id: int,
    kind: Kind,
    fmt: StreamFormat,
    names: tuple[str, ...],
) -> bytes | None:
    """One chunk's part of a stream, read in a short session of its own."""
    packed: bytes | None = None  # packed results without their external_ids
    columns: list[list[Any]] | None = None  # packed results with them
    items: list[Any] | None = None  # anything else: None for every field of each problem
    with open_session() as session:
        blob = session.scalar(sa.select(_BLOB_COLUMNS[kind]).where(ImportChunk.id == chunk_id))
        if not blob:
            return None
        if kind != "results":
            items = None if names == FIELDS[kind] else stored_items(blob)
        elif blob.startswith(_PACKED) and "external_id" not in names:
            packed = blob
        elif blob.startswith(_PACKED):
            columns = _packed_columns(session, blob, names)
        elif "external_id" in names:
            # Their external_ids from the objects, in the same short session.
            items = [_result_item(item) for item in with_external_ids(session, stored_items(blob))]
        else:
            items = [_result_item(item) for item in stored_items(blob)]
    if packed is not None:
        return _packed_lines(packed, names, fmt)
    if columns is not None:
        return _packed_ndjson(columns, names) if fmt == "ndjson" else _packed_csv(columns, names)
    if items is None:
        return (
            _problem_lines(blob) if fmt == "ndjson" else _csv_rows(_rows(stored_items(blob), names))
        )
    if fmt == "ndjson":
        if names != FIELDS[kind]:
            items = [{name: item.get(name) for name in names} for item in items]
        return b"".join(orjson.dumps(item) + b"\n" for item in items)
    return _csv_rows(_rows(items, names))


def _problem_lines(blob: bytes) -> bytes:
    """A stored list of problems as NDJSON: copied line by line, not decoded (a problem
    is stored as the JSON the stream sends), unless stored in the layout before that."""
    if blob.startswith(_LINES_START):
        return b"\n".join(line.rstrip(b",") for line in _item_lines(blob, 0, None)) + b"\n"
    return b"".join(orjson.dumps(item) + b"\n" for item in stored_items(blob))


def _rows(items: Iterable[dict[str, Any]], names: tuple[str, ...]) -> Iterator[list[Any]]:
    """Items as CSV rows of ``names``; ``changed`` as ``true``/``false``, as in the JSON."""
    changed = names.index("changed") if "changed" in names else -1
    for item in items:
        row = [item.get(name) for name in names]
        if changed >= 0:
            row[changed] = "true" if row[changed] else "false"
        yield row


def _csv_rows(rows: Any) -> bytes:
    text = io.StringIO()
    CsvWriter(text).writerows(rows)
    return text.getvalue().encode()


def batch_summary(batch: ImportBatch) -> dict[str, Any]:
    """A batch without its per-record lists (the items of the batch list)."""
    body = _head(batch)
    body.update(_tail(batch))
    return body


def batch_body(session: Session, batch: ImportBatch, inline_items: int) -> dict[str, Any]:
    """The import response body: also the body of ``GET /v1/import/batches/{id}``.

    ``results``, ``errors`` and ``warnings`` hold at most ``inline_items`` entries
    each; ``*_total`` and ``links`` say where the rest is.
    """
    body = _head(batch)
    if batch.details_purged_at is not None or not inline_items:
        # Deleted by the retention purge (the counts stay, the lists are gone), or
        # the counts alone were asked for: nothing to read.
        body.update({kind: [] for kind in KINDS})
    elif batch.chunk_count == 1:
        # The common small batch: its three lists in one read.
        # (None when the purge deleted the chunk since the batch was read.)
        blobs = session.execute(
            sa.select(*_BLOB_COLUMNS.values()).where(ImportChunk.batch_id == batch.id)
        ).one_or_none() or (None, None, None)
        for kind, blob in zip(KINDS, blobs, strict=True):
            items = stored_items(blob, 0, inline_items) if total(batch, kind) else []
            if kind == "results":
                items = [_result_item(item) for item in with_external_ids(session, items)]
            body[kind] = items
    else:
        for kind in KINDS:
            body[kind] = page(session, batch.id, kind, 0, min(inline_items, total(batch, kind)))
    body.update(_tail(batch))
    return body


def _head(batch: ImportBatch) -> dict[str, Any]:
    return {
        "id": batch.report_id,
        "slug": batch.slug,
        "report_name": batch.report_name,
        "base_object": batch.base_object,
        "mapping": batch.mapping,
        "report_version": batch.report_version,
        "batch_id": batch.id,
        "dry_run": batch.dry_run,
        "status": BatchStatus(batch.status).value,
        "received_count": batch.received_count,
        "created_count": batch.created_count,
        "updated_count": batch.updated_count,
        "unchanged_count": batch.unchanged_count,
        "failed_count": batch.failed_count,
    }


def _tail(batch: ImportBatch) -> dict[str, Any]:
    base = f"/v1/import/batches/{batch.id}"
    return {
        "received_at": unix(batch.received_at),
        "completed_at": unix(batch.completed_at),
        "progress": {"processed": batch.processed_count, "total": batch.received_count},
        **{f"{kind}_total": total(batch, kind) for kind in KINDS},
        "details_purged_at": unix(batch.details_purged_at),
        "links": {"self": base, **{kind: f"{base}/{kind}" for kind in KINDS}},
    }


def http_status(batch: ImportBatch) -> int:
    """200 done with something written, 400 done with nothing written, 202 running."""
    if not BatchStatus(batch.status).is_done:
        return 202
    return 200 if batch.created_count + batch.updated_count > 0 else 400
