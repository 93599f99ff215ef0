"""Where a batch changes state.

    accept_batch         -> queued       (batch and chunks committed by the caller)
    claim_chunk          -> processing   (first chunk picked up by a worker)
    write_chunk          -> completed    (when the last chunk finishes)
    fail_chunk           -> failed       (a chunk gave up after its retries)

Every function here only adds and flushes; the request or the task that calls it
owns the transaction. Counters on the batch are only ever changed by atomic
``UPDATE ... SET n = n + :delta`` statements in the same transaction that
changes a chunk's status, so a chunk is counted exactly once however many times
its task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import ids
from importer.db import utcnow
from importer.models import (
    BatchStatus,
    ChunkStatus,
    ImportBatch,
    ImportChunk,
    ImportReport,
    Org,
)
from importer.problems import ErrorCode, Problem, problem
from importer.upsert import write_records
from importer.validation import ValidationOutcome

log = logging.getLogger(__name__)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def _slice_by_index(items: Sequence[Any], start: int, end: int, key: Any) -> tuple[list[Any], int]:
    """Items (sorted by index) whose index is in ``[start, end)``, and where they stop."""
    result = []
    position = 0
    while position < len(items) and key(items[position]) < end:
        if key(items[position]) >= start:
            result.append(items[position])
        position += 1
    return result, position


def accept_batch(
    session: Session,
    *,
    org: Org,
    report: ImportReport,
    received_count: int,
    outcome: ValidationOutcome,
    chunk_size: int,
    request_id: str | None = None,
) -> ImportBatch:
    """Record an accepted batch and its chunks (the outbox), ready to be dispatched.

    Chunks cover contiguous index ranges; a chunk with nothing valid to write is
    finished at once. A batch with nothing valid at all is completed at once.
    """
    now = utcnow()
    batch = ImportBatch(
        id=ids.new_id(ids.BATCH),
        org_id=org.id,
        report_id=report.id,
        report_version=report.version,
        slug=report.slug,
        report_name=report.report_name,
        base_object=report.base_object,
        mapping=dict(report.mapping),
        status=BatchStatus.QUEUED,
        received_count=received_count,
        created_count=0,
        updated_count=0,
        failed_count=outcome.failed_count,
        processed_count=outcome.failed_count,
        error_count=len(outcome.errors),
        warning_count=len(outcome.warnings),
        chunk_count=0,
        chunks_finished=0,
        received_at=now,
        request_id=request_id,
    )
    session.add(batch)
    session.flush()  # assigns batch.seq

    valid, errors, warnings = outcome.valid, outcome.errors, outcome.warnings
    chunks: list[dict[str, Any]] = []
    for position, start in enumerate(range(0, received_count, chunk_size)):
        end = min(start + chunk_size, received_count)
        chunk_valid, used = _slice_by_index(valid, start, end, lambda item: item[0])
        valid = valid[used:]
        chunk_errors, used = _slice_by_index(errors, start, end, lambda item: item["index"])
        errors = errors[used:]
        chunk_warnings, used = _slice_by_index(warnings, start, end, lambda item: item["index"])
        warnings = warnings[used:]
        has_work = bool(chunk_valid)
        chunks.append(
            dict(
                batch_id=batch.id,
                position=position,
                start_index=start,
                end_index=end,
                status=ChunkStatus.PENDING if has_work else ChunkStatus.DONE,
                record_count=len(chunk_valid),
                payload=_dumps(chunk_valid) if has_work else None,
                results=None,
                errors=_dumps(chunk_errors) if chunk_errors else None,
                warnings=_dumps(chunk_warnings) if chunk_warnings else None,
                invalid_count=len({error["index"] for error in chunk_errors}),
                error_count=len(chunk_errors),
                warning_count=len(chunk_warnings),
                created_at=now,
                finished_at=None if has_work else now,
            )
        )
    if chunks:
        session.execute(sa.insert(ImportChunk), chunks)
    batch.chunk_count = len(chunks)
    batch.chunks_finished = sum(1 for chunk in chunks if chunk["status"] is ChunkStatus.DONE)
    if batch.chunks_finished == batch.chunk_count:
        batch.status = BatchStatus.COMPLETED
        batch.completed_at = now
    session.flush()
    return batch


def pending_chunk_ids(session: Session, batch_id: str) -> list[int]:
    return list(
        session.scalars(
            sa.select(ImportChunk.id)
            .where(ImportChunk.batch_id == batch_id, ImportChunk.status == ChunkStatus.PENDING)
            .order_by(ImportChunk.position)
        )
    )


def _lock_chunk(session: Session, chunk_id: int) -> ImportChunk | None:
    """The chunk, row-locked for this transaction, or None if it needs no more work.

    The lock is waited for, never skipped: it may be held for a moment by the
    request or relay that is marking the chunk as dispatched, or for a whole write
    by another worker that got the same message; in that case the chunk is found
    finished once the lock is ours.
    """
    chunk = session.scalars(
        sa.select(ImportChunk)
        .where(ImportChunk.id == chunk_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if chunk is None or chunk.status in (ChunkStatus.DONE, ChunkStatus.FAILED):
        return None
    return chunk


def claim_chunk(session: Session, chunk_id: int) -> bool:
    """Mark a chunk (and its batch, if still queued) as processing.

    Returns False when the chunk needs no more work. Committed on its own, so the
    status is visible while the chunk is written.
    """
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None:
        return False
    now = utcnow()
    chunk.status = ChunkStatus.PROCESSING
    chunk.started_at = now
    chunk.attempts += 1
    session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == chunk.batch_id, ImportBatch.status == BatchStatus.QUEUED)
        .values(status=BatchStatus.PROCESSING, started_at=now)
    )
    session.flush()
    return True


@dataclass(frozen=True)
class ChunkFinished:
    batch_id: str
    #: True when this chunk was the batch's last one.
    batch_done: bool


def _finish_in_batch(
    session: Session,
    chunk: ImportChunk,
    *,
    created: int,
    updated: int,
    rejected: int,
    errors_added: int,
) -> ChunkFinished:
    """Add a finished chunk's counts to its batch; complete the batch after its last chunk.

    The UPDATE takes the batch row's lock, so concurrent chunk completions of one
    batch are serialised and exactly one of them sees the last chunk finish.
    """
    finished, total = session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id == chunk.batch_id)
        .values(
            created_count=ImportBatch.created_count + created,
            updated_count=ImportBatch.updated_count + updated,
            failed_count=ImportBatch.failed_count + rejected,
            processed_count=ImportBatch.processed_count + chunk.record_count,
            error_count=ImportBatch.error_count + errors_added,
            chunks_finished=ImportBatch.chunks_finished + 1,
        )
        .returning(ImportBatch.chunks_finished, ImportBatch.chunk_count)
    ).one()
    done = finished >= total
    if done:
        any_failed = session.scalar(
            sa.select(sa.func.count())
            .select_from(ImportChunk)
            .where(ImportChunk.batch_id == chunk.batch_id, ImportChunk.status == ChunkStatus.FAILED)
        )
        session.execute(
            sa.update(ImportBatch)
            .where(ImportBatch.id == chunk.batch_id)
            .values(
                status=BatchStatus.FAILED if any_failed else BatchStatus.COMPLETED,
                completed_at=utcnow(),
            )
        )
    session.flush()
    return ChunkFinished(batch_id=chunk.batch_id, batch_done=done)


def _merge(existing: bytes | None, added: Sequence[Problem]) -> tuple[bytes | None, int]:
    problems: list[Problem] = orjson.loads(existing) if existing else []
    problems.extend(added)
    problems.sort(key=lambda item: item["index"])
    return (_dumps(problems) if problems else None), len(problems)


def write_chunk(session: Session, chunk_id: int) -> ChunkFinished | None:
    """Write a chunk's records and record the outcome, all in the caller's transaction.

    The chunk row stays locked until the caller commits, so a duplicate delivery
    of the same task waits, then finds the chunk done.
    """
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None:
        return None
    batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == chunk.batch_id)).one()
    records = [(index, values) for index, values in orjson.loads(chunk.payload or b"[]")]
    outcome = write_records(
        session,
        org_id=batch.org_id,
        base_object=batch.base_object,
        mapping=batch.mapping,
        seq=batch.seq,
        records=records,
    )
    chunk.errors, chunk.error_count = _merge(chunk.errors, outcome.errors)
    chunk.results = _dumps(outcome.results)
    chunk.created_count = outcome.created
    chunk.updated_count = outcome.updated
    chunk.rejected_count = outcome.rejected
    chunk.status = ChunkStatus.DONE
    chunk.payload = None
    chunk.finished_at = utcnow()
    chunk.last_error = None
    session.flush()
    return _finish_in_batch(
        session,
        chunk,
        created=outcome.created,
        updated=outcome.updated,
        rejected=outcome.rejected,
        errors_added=len(outcome.errors),
    )


def fail_chunk(session: Session, chunk_id: int, reason: str) -> ChunkFinished | None:
    """Give up on a chunk after its retries: its records fail with ``write_failed``.

    The payload is kept, so an operator can re-drive the chunk later.
    """
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None:
        return None
    failures = [
        problem(
            index,
            values.get("external_id"),
            None,
            ErrorCode.WRITE_FAILED,
            "The record could not be written because of a server-side fault; "
            "nothing of it was stored. It can be re-driven by an operator or sent again.",
        )
        for index, values in orjson.loads(chunk.payload or b"[]")
    ]
    chunk.errors, chunk.error_count = _merge(chunk.errors, failures)
    chunk.rejected_count = len(failures)
    chunk.status = ChunkStatus.FAILED
    chunk.finished_at = utcnow()
    chunk.last_error = reason[:2000]
    session.flush()
    log.error("chunk %s of batch %s failed: %s", chunk.id, chunk.batch_id, reason)
    return _finish_in_batch(
        session, chunk, created=0, updated=0, rejected=len(failures), errors_added=len(failures)
    )


def record_chunk_error(session: Session, chunk_id: int, reason: str) -> None:
    """Remember why the last attempt of a chunk failed (it will be retried)."""
    session.execute(
        sa.update(ImportChunk)
        .where(ImportChunk.id == chunk_id, ImportChunk.status == ChunkStatus.PROCESSING)
        .values(last_error=reason[:2000])
    )
