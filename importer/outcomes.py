"""Reading a batch's outcome: the response body and pages of results, errors, warnings.

A batch's per-record outcome is stored per chunk (see ``ImportChunk``); since
chunks cover contiguous, ordered index ranges, a page is read by skipping whole
chunks by their counts and decoding only the chunks the page overlaps.

A chunk's results are stored in 21 bytes a record (:func:`pack_results`): the index,
the action and the object id's 128 bits; the external_id is the object's own, read
back from the object table for the page being answered (one indexed read). A dry run,
whose records may have no object, keeps them as JSON ``[index, external_id,
coverbase_id, action]``, as every chunk did before.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import catalog
from importer.db import unix
from importer.models import OBJECT_TABLES, BatchStatus, ImportBatch, ImportChunk

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


#: Packed results start with a NUL byte, which JSON never does.
_PACKED = b"\x00"
#: index, 1 if created (else updated), the object id's 32 hex digits as 16 bytes.
_RESULT_ROW = struct.Struct("<IB16s")
_BASE_BY_PREFIX = {base.id_prefix: base.name for base in catalog.CATALOG.values()}
_LOOKUP_SLICE = 1000


def pack_results(results: Sequence[Sequence[Any]]) -> bytes:
    """A chunk's results (``[index, external_id, coverbase_id, action]`` each, of one
    base object) as stored: packed when every record has its object, else JSON."""
    prefix: str | None = None
    rows = bytearray()
    try:
        for index, _external_id, object_id, action in results:
            head, _, digits = str(object_id).partition("_")
            if object_id is None or len(digits) != 32 or head != (prefix or head):
                raise ValueError(object_id)
            prefix = head
            rows += _RESULT_ROW.pack(index, action == "created", bytes.fromhex(digits))
    except (ValueError, struct.error):
        return orjson.dumps(results)
    if prefix is None:
        return orjson.dumps(results)
    head_bytes = prefix.encode()
    return _PACKED + bytes([len(head_bytes)]) + head_bytes + bytes(rows)


def unpack_results(blob: bytes | None, start: int = 0, stop: int | None = None) -> list[list[Any]]:
    """Stored results ``[start:stop]`` as ``[index, external_id, coverbase_id, action]``
    lists; a packed record's external_id is None until :func:`_with_external_ids` reads
    it. Packed rows have one size, so only the rows asked for are decoded."""
    if not blob:
        return []
    if not blob.startswith(_PACKED):
        stored: list[list[Any]] = orjson.loads(blob)
        return stored[start:stop]
    size = blob[1]
    prefix = blob[2 : 2 + size].decode() + "_"
    rows = memoryview(blob)[2 + size :]
    width = _RESULT_ROW.size
    first, last = slice(start, stop).indices(len(rows) // width)[:2]
    return [
        [index, None, prefix + raw.hex(), "created" if created else "updated"]
        for index, created, raw in _RESULT_ROW.iter_unpack(rows[first * width : last * width])
    ]


def _with_external_ids(session: Session, stored: list[list[Any]]) -> list[list[Any]]:
    """Fill in the external_ids packed results leave out, from the objects themselves."""
    missing: dict[str, list[str]] = {}
    for _index, external_id, object_id, _action in stored:
        if external_id is None and object_id:
            base = _BASE_BY_PREFIX.get(object_id.partition("_")[0])
            if base is not None:
                missing.setdefault(base, []).append(object_id)
    if not missing:
        return stored
    found: dict[str, str] = {}
    for base, object_ids in missing.items():
        table = OBJECT_TABLES[base]
        for start in range(0, len(object_ids), _LOOKUP_SLICE):
            rows = session.execute(
                sa.select(table.c.id, table.c.external_id).where(
                    table.c.id.in_(object_ids[start : start + _LOOKUP_SLICE])
                )
            )
            found.update({object_id: external_id for object_id, external_id in rows})
    for item in stored:
        if item[1] is None and item[2]:
            item[1] = found.get(item[2])
    return stored


def _decode(kind: Kind, blob: bytes | None, start: int = 0, stop: int | None = None) -> list[Any]:
    """Items ``[start:stop]`` of a chunk's stored results, errors or warnings."""
    if kind == "results":
        return unpack_results(blob, start, stop)
    items: list[Any] = orjson.loads(blob or b"[]")
    return items[start:stop]


def _result_item(stored: list[Any]) -> dict[str, Any]:
    index, external_id, coverbase_id, action = stored
    return {
        "index": index,
        "external_id": external_id,
        "coverbase_id": coverbase_id,
        "action": action,
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
        items.extend(_decode(kind, blobs[chunk_id], skip, skip + limit - len(items)))
    if kind == "results":
        return [_result_item(item) for item in _with_external_ids(session, items)]
    return items


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
    if batch.details_purged_at is not None:
        # Deleted by the retention purge: the counts stay, the lists are gone.
        body.update({kind: [] for kind in KINDS})
    elif batch.chunk_count == 1:
        # The common small batch: its three lists in one read.
        # (None when the purge deleted the chunk since the batch was read.)
        blobs = session.execute(
            sa.select(*_BLOB_COLUMNS.values()).where(ImportChunk.batch_id == batch.id)
        ).one_or_none() or (None, None, None)
        for kind, blob in zip(KINDS, blobs, strict=True):
            items = _decode(kind, blob, 0, inline_items) if blob and total(batch, kind) else []
            if kind == "results":
                items = [_result_item(item) for item in _with_external_ids(session, items)]
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
