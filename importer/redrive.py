"""Re-driving a batch: its failed chunks written again, its unfinished chunks that
nobody is writing sent again (``importer batches retry``, the ops page's Retry).

Like ``importer.batches``, this only adds and flushes in the caller's transaction; the
hand-over to the broker that follows is ``importer.outbox.Outbox.redrive``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import outcomes
from importer.db import utcnow
from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk
from importer.problems import ErrorCode, Problem

log = logging.getLogger(__name__)


class BatchNotFound(LookupError):
    """No batch of that id."""


@dataclass(frozen=True)
class RedriveOutcome:
    """What :func:`redrive_batch` did to a batch."""

    batch_id: str
    status_before: str
    status_after: str
    #: Failed chunks put back to pending (their ``write_failed`` errors removed).
    failed_chunks: int
    #: Records of those chunks, taken back out of ``failed_count``.
    failed_records: int
    #: Unfinished chunks nobody was writing, whose hand-over was cleared (sent again).
    resent_chunks: int
    #: Unfinished chunks being written right now (row lock held): left alone.
    busy_chunks: int
    #: Pending chunks still waiting for their hand-over (dispatched_at NULL): the
    #: caller sends them right after the commit, or the relay does.
    to_send: tuple[int, ...]

    @property
    def changed(self) -> bool:
        return bool(self.failed_chunks or self.resent_chunks)

    def describe(self) -> str:
        """One sentence for an operator."""
        if not self.changed and not self.to_send:
            if self.busy_chunks:
                return (
                    f"Batch {self.batch_id} is {self.status_after}: nothing to re-drive, "
                    f"{self.busy_chunks} chunk(s) being written right now."
                )
            if self.status_after == BatchStatus.COMPLETED:
                return (
                    f"Batch {self.batch_id} is completed with nothing failed: nothing to re-drive."
                )
            return f"Batch {self.batch_id} is {self.status_after}: nothing to re-drive."
        parts = []
        if self.failed_chunks:
            parts.append(
                f"{self.failed_chunks} failed chunk(s) ({self.failed_records} records) put back "
                "to pending"
            )
        if self.resent_chunks:
            parts.append(f"{self.resent_chunks} unfinished chunk(s) to be sent again")
        if self.busy_chunks:
            parts.append(f"{self.busy_chunks} chunk(s) being written left alone")
        if not parts:
            parts.append(f"{len(self.to_send)} chunk(s) already waiting to be sent")
        return (
            f"Batch {self.batch_id}: {'; '.join(parts)}; "
            f"status {self.status_before} -> {self.status_after}."
        )


def _without_write_failures(errors: bytes | None) -> tuple[bytes | None, int, int]:
    """The chunk's errors less the ``write_failed`` ones ``fail_chunk`` added:
    (errors, how many are left, how many were removed)."""
    problems: list[Problem] = orjson.loads(errors) if errors else []
    kept = [item for item in problems if item["error_code"] != ErrorCode.WRITE_FAILED]
    return (outcomes.encode(kept) if kept else None), len(kept), len(problems) - len(kept)


#: A pending chunk handed to the broker less than this long ago is not sent again by a
#: re-drive: its message is on its way (so re-driving twice in a row sends nothing twice).
RESEND_AFTER_SECONDS = 30.0


def redrive_batch(
    session: Session, batch_id: str, *, resend_after_seconds: float = RESEND_AFTER_SECONDS
) -> RedriveOutcome:
    """Re-drive the failed and unfinished chunks of a batch, in the caller's transaction.

    * A **failed** chunk goes back to pending: its ``write_failed`` errors are removed
      and what :func:`fail_chunk` added to the batch is taken back out of it (atomic
      ``UPDATE``: ``failed_count``, ``processed_count``, ``error_count``,
      ``chunks_finished``); the batch is ``processing`` again (``queued`` if no chunk
      of it ever started) with ``completed_at`` cleared. It kept its payload (see
      :func:`fail_chunk`), so it is written as if for the first time; when the batch
      ends again, a new ``Import.Completed``/``Import.Failed`` event is recorded.
    * A **processing** chunk that nobody is writing (its row lock is free, as the sweep
      tells; SQLite has no row locks, so there the sweep alone does it), and a
      **pending** one handed to the broker more than ``resend_after_seconds`` ago, are
      put back to pending with ``dispatched_at`` cleared, so they are sent again. One
      being written (lock held) is left alone.

    Chunks are row-locked, skipping locked rows, and each change is guarded by the
    status it was seen in, so a chunk is never re-driven twice at once nor while a
    worker writes it. Chunks left pending with ``dispatched_at`` NULL are in
    ``to_send``: the caller hands them to the broker after the commit (see
    ``importer.outbox.Outbox.redrive``), or the relay does. Re-driving again changes
    nothing; a completed batch with nothing failed is a no-op that says so. Raises
    :class:`BatchNotFound`.
    """
    found = session.scalar(sa.select(ImportBatch.status).where(ImportBatch.id == batch_id))
    if found is None:
        raise BatchNotFound(batch_id)
    status_before = BatchStatus(found).value
    unfinished = (ChunkStatus.PENDING, ChunkStatus.PROCESSING, ChunkStatus.FAILED)
    chunk_ids = list(
        session.scalars(
            sa.select(ImportChunk.id).where(
                ImportChunk.batch_id == batch_id, ImportChunk.status.in_(unfinished)
            )
        )
    )
    if not chunk_ids:
        return RedriveOutcome(batch_id, status_before, status_before, 0, 0, 0, 0, ())
    # A worker writing a chunk holds its row lock for the whole write: skip those.
    chunks = session.execute(
        sa.select(
            ImportChunk.id,
            ImportChunk.status,
            ImportChunk.errors,
            ImportChunk.dispatched_at,
        )
        .where(ImportChunk.id.in_(chunk_ids))
        .order_by(ImportChunk.position)
        .with_for_update(skip_locked=True)
    ).all()
    row_locks = session.get_bind().dialect.name != "sqlite"
    fresh = utcnow() - dt.timedelta(seconds=resend_after_seconds)
    busy = len(chunk_ids) - len(chunks)
    failed_chunks = failed_records = resent = 0
    to_send: list[int] = []
    for chunk in chunks:
        values: dict[str, Any] = {}
        removed = 0
        if chunk.status == ChunkStatus.FAILED:
            errors, error_count, removed = _without_write_failures(chunk.errors)
            values = dict(
                errors=errors,
                error_count=error_count,
                rejected_count=0,
                started_at=None,
                finished_at=None,
            )
        elif chunk.status == ChunkStatus.PROCESSING and not row_locks:
            busy += 1
            continue
        elif chunk.status == ChunkStatus.PENDING and (
            chunk.dispatched_at is None or chunk.dispatched_at > fresh
        ):
            if chunk.dispatched_at is None:
                to_send.append(chunk.id)  # already waiting for its hand-over
            continue
        elif chunk.status not in (ChunkStatus.PROCESSING, ChunkStatus.PENDING):
            continue  # finished meanwhile
        changed: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
            sa.update(ImportChunk)
            .where(ImportChunk.id == chunk.id, ImportChunk.status == chunk.status)
            .values(status=ChunkStatus.PENDING, dispatched_at=None, **values)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:
            continue  # moved on since it was read (only possible without row locks)
        to_send.append(chunk.id)
        if chunk.status == ChunkStatus.FAILED:
            failed_chunks += 1
            failed_records += removed
        else:
            resent += 1
    if failed_chunks:
        # Take back exactly what fail_chunk added (see _finish_in_batch), atomically.
        session.execute(
            sa.update(ImportBatch)
            .where(ImportBatch.id == batch_id)
            .values(
                failed_count=ImportBatch.failed_count - failed_records,
                processed_count=ImportBatch.processed_count - failed_records,
                error_count=ImportBatch.error_count - failed_records,
                chunks_finished=ImportBatch.chunks_finished - failed_chunks,
                status=sa.case(
                    (ImportBatch.started_at.is_(None), BatchStatus.QUEUED.value),
                    else_=BatchStatus.PROCESSING.value,
                ),
                completed_at=None,
            )
            .execution_options(synchronize_session=False)
        )
    status_after = session.scalar(sa.select(ImportBatch.status).where(ImportBatch.id == batch_id))
    outcome = RedriveOutcome(
        batch_id=batch_id,
        status_before=status_before,
        status_after=BatchStatus(status_after or found).value,
        failed_chunks=failed_chunks,
        failed_records=failed_records,
        resent_chunks=resent,
        busy_chunks=busy,
        to_send=tuple(to_send),
    )
    if outcome.changed:
        log.info("re-drive: %s", outcome.describe())
    return outcome
