"""Where a batch changes state.

    accept_batch         -> queued       (batch and chunks committed by the caller)
    claim_chunk          -> processing   (first chunk picked up by a worker)
    write_chunk          -> completed    (when the last chunk finishes)
    fail_chunk           -> failed       (a chunk gave up after its retries)

A batch that ends (completed or failed) records its webhook deliveries
(``importer.webhooks.record_batch_end``) in the same transaction.

Every function here only adds and flushes; the request or the task that calls it
owns the transaction. Counters on the batch are only ever changed by atomic
``UPDATE ... SET n = n + :delta`` statements in the same transaction that
changes a chunk's status, so a chunk is counted exactly once however many times
its task runs.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import ids, outcomes, webhooks
from importer.collector import gc_paused
from importer.db import utcnow
from importer.models import (
    BatchStatus,
    ChunkStatus,
    ImportBatch,
    ImportChunk,
    ImportReport,
    Lane,
    Org,
)
from importer.problems import ErrorCode, Problem, problem
from importer.sources import SentBefore, SourceDigests, sent_before
from importer.upsert import SOURCE_DIGEST, hold_accepts_of_org, plan_records, write_records
from importer.validation import ValidationOutcome, validate_records

log = logging.getLogger(__name__)


def _as_fragment(value: Any) -> orjson.Fragment:
    """A record kept as its JSON bytes (any buffer) goes into a payload as is."""
    try:
        return orjson.Fragment(memoryview(value).tobytes())
    except TypeError:
        raise TypeError(f"cannot store {type(value).__name__} in a chunk") from None


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_as_fragment)


class _Cursor:
    """Hands out consecutive runs of a list sorted by index: the items below ``end``."""

    def __init__(self, items: list[Any], key: Callable[[Any], int], release: bool = False):
        self.items, self.key, self.release = items, key, release
        self.position = 0

    def take(self, end: int) -> list[Any]:
        start = self.position
        while self.position < len(self.items) and self.key(self.items[self.position]) < end:
            self.position += 1
        run = self.items[start : self.position]
        if self.release:
            # Drop the list's references as we go, so a large batch's records are
            # freed chunk by chunk instead of all at the end.
            self.items[start : self.position] = [None] * (self.position - start)
        return run


@dataclass(frozen=True)
class Accepted:
    batch: ImportBatch
    #: The chunks with work to do, for the caller to hand to the broker after commit.
    chunk_ids: list[int]
    #: Their lane: the interactive lane's are sent at once, the bulk lane's released
    #: by the scheduler.
    lane: Lane = Lane.BULK
    #: Webhook deliveries recorded because the batch ended at once (nothing to write).
    deliveries: int = 0


def accept_batch(
    session: Session,
    *,
    org: Org,
    report: ImportReport,
    received_count: int,
    outcome: ValidationOutcome,
    chunk_size: int,
    validated: bool = True,
    dry_run: bool = False,
    lane: Lane = Lane.BULK,
    handed_over: bool = False,
    request_id: str | None = None,
) -> Accepted:
    """Record an accepted batch and its chunks (the outbox), ready to be dispatched.

    ``outcome`` is what the web found: with ``validated``, every record validated
    (``valid`` holds values to write); without, only the batch-wide checks
    (``valid`` holds every record as sent, for the workers to validate). Its
    ``valid`` list is consumed: each chunk's records are released once stored.

    Chunks cover contiguous index ranges; a chunk with nothing to do is finished at
    once, and a batch with nothing to do is completed at once. ``lane``: where the
    chunks wait (see ``importer.scheduler``). ``handed_over`` (interactive lane): the
    caller sends the chunks to the broker right after the commit, so they are marked
    dispatched now (saving a write after the send; a failed send clears the mark).
    """
    now = utcnow()
    chunk_count = -(-received_count // chunk_size)
    with_work = {index // chunk_size for index, _ in outcome.valid}
    finished = chunk_count - len(with_work)
    done = finished == chunk_count
    batch = ImportBatch(
        id=ids.new_id(ids.BATCH),
        org_id=org.id,
        report_id=report.id,
        report_version=report.version,
        slug=report.slug,
        report_name=report.report_name,
        base_object=report.base_object,
        mapping=dict(report.mapping),
        required=list(report.required),
        dry_run=dry_run,
        status=BatchStatus.COMPLETED if done else BatchStatus.QUEUED,
        received_count=received_count,
        created_count=0,
        updated_count=0,
        failed_count=outcome.failed_count,
        processed_count=outcome.failed_count,
        error_count=len(outcome.errors),
        warning_count=len(outcome.warnings),
        chunk_count=chunk_count,
        chunks_finished=finished,
        received_at=now,
        completed_at=now if done else None,
        request_id=request_id,
    )
    # Before the batch takes its seq (and before add: a statement autoflushes): later
    # wins needs every older batch of the org visible to a worker that skips
    # unchanged rows (importer.upsert.older_writes_pending), so hold it until commit.
    hold_accepts_of_org(session, org.id)
    session.add(batch)
    session.flush()  # one INSERT, which assigns batch.seq

    records = _Cursor(outcome.valid, lambda item: item[0], release=True)
    errors = _Cursor(outcome.errors, lambda item: item["index"])
    warnings = _Cursor(outcome.warnings, lambda item: item["index"])
    # Core, not the ORM's bulk insert: one plain INSERT ... RETURNING id per chunk.
    chunks = cast(sa.Table, ImportChunk.__table__)
    insert_chunk = sa.insert(chunks).returning(chunks.c.id)
    chunk_ids = []
    for position, start in enumerate(range(0, received_count, chunk_size)):
        end = min(start + chunk_size, received_count)
        chunk_records = records.take(end)
        chunk_errors = errors.take(end)
        chunk_warnings = warnings.take(end)
        has_work = position in with_work
        chunk_id = session.execute(
            insert_chunk,
            dict(
                batch_id=batch.id,
                org_id=org.id,
                batch_seq=batch.seq,
                lane=lane,
                position=position,
                start_index=start,
                end_index=end,
                status=ChunkStatus.PENDING if has_work else ChunkStatus.DONE,
                record_count=len(chunk_records),
                payload=_dumps(chunk_records) if has_work else None,
                validated=validated,
                results=None,
                errors=outcomes.encode(chunk_errors) if chunk_errors else None,
                warnings=outcomes.encode(chunk_warnings) if chunk_warnings else None,
                created_count=0,
                updated_count=0,
                invalid_count=len({error["index"] for error in chunk_errors}),
                rejected_count=0,
                error_count=len(chunk_errors),
                warning_count=len(chunk_warnings),
                attempts=0,
                created_at=now,
                dispatched_at=now if has_work and handed_over else None,
                finished_at=None if has_work else now,
            ),
        ).scalar_one()
        if has_work:
            chunk_ids.append(chunk_id)
        del chunk_records
    if done:
        return Accepted(batch, chunk_ids, lane, webhooks.record_batch_end(session, batch.id))
    return Accepted(batch, chunk_ids, lane)


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


# The statements a worker runs for every chunk, built once: plain Core statements on
# the tables (the ORM's bulk UPDATE path and statement building per call cost more
# than the statements themselves for a small chunk).
_BATCHES = cast(sa.Table, ImportBatch.__table__)
_CHUNKS = cast(sa.Table, ImportChunk.__table__)

_CLAIM_CHUNK = (
    sa.update(_CHUNKS)
    .where(
        _CHUNKS.c.id == sa.bindparam("chunk_id"),
        _CHUNKS.c.status.in_([ChunkStatus.PENDING, ChunkStatus.PROCESSING]),
    )
    .values(
        status=ChunkStatus.PROCESSING,
        started_at=sa.bindparam("now"),
        attempts=_CHUNKS.c.attempts + 1,
        claimed_by=sa.bindparam("worker"),
    )
    .returning(_CHUNKS.c.batch_id, _CHUNKS.c.lane, _CHUNKS.c.attempts, _CHUNKS.c.created_at)
)
_START_BATCH = (
    sa.update(_BATCHES)
    .where(_BATCHES.c.id == sa.bindparam("batch_id"), _BATCHES.c.status == BatchStatus.QUEUED)
    .values(status=BatchStatus.PROCESSING, started_at=sa.bindparam("now"))
)
_ADD_TO_BATCH = (
    sa.update(_BATCHES)
    .where(_BATCHES.c.id == sa.bindparam("batch_id"))
    .values(
        created_count=_BATCHES.c.created_count + sa.bindparam("created", type_=sa.Integer),
        updated_count=_BATCHES.c.updated_count + sa.bindparam("updated", type_=sa.Integer),
        unchanged_count=_BATCHES.c.unchanged_count + sa.bindparam("unchanged", type_=sa.Integer),
        failed_count=_BATCHES.c.failed_count + sa.bindparam("rejected", type_=sa.Integer),
        processed_count=_BATCHES.c.processed_count + sa.bindparam("processed", type_=sa.Integer),
        error_count=_BATCHES.c.error_count + sa.bindparam("errors", type_=sa.Integer),
        warning_count=_BATCHES.c.warning_count + sa.bindparam("warnings", type_=sa.Integer),
        chunks_finished=_BATCHES.c.chunks_finished + 1,
    )
    .returning(
        _BATCHES.c.chunks_finished,
        _BATCHES.c.chunk_count,
        _BATCHES.c.dry_run,
        _BATCHES.c.received_at,
    )
)
_FAILED_CHUNKS = (
    sa.select(sa.func.count())
    .select_from(_CHUNKS)
    .where(_CHUNKS.c.batch_id == sa.bindparam("batch_id"), _CHUNKS.c.status == ChunkStatus.FAILED)
)
_END_BATCH = (
    sa.update(_BATCHES)
    .where(_BATCHES.c.id == sa.bindparam("batch_id"))
    .values(status=sa.bindparam("status"), completed_at=sa.bindparam("completed_at"))
)


@dataclass(frozen=True)
class Claimed:
    batch_id: str
    lane: Lane
    #: Seconds from the chunk's acceptance to this start, on its first attempt only.
    waited_seconds: float | None


def claim_chunk(session: Session, chunk_id: int, worker: str | None = None) -> Claimed | None:
    """Mark a chunk (and its batch, if still queued) as processing by ``worker``.

    Returns the chunk's batch and lane, or None when the chunk needs no more work.
    One UPDATE, which waits for the row's lock like :func:`_lock_chunk` does;
    committed on its own, so the status is visible while the chunk is written.
    """
    now = utcnow()
    row = session.execute(
        _CLAIM_CHUNK, {"chunk_id": chunk_id, "now": now, "worker": worker}
    ).one_or_none()
    if row is None:
        return None
    batch_id, lane, attempts, created_at = row
    session.execute(_START_BATCH, {"batch_id": batch_id, "now": now})
    if created_at is not None and created_at.tzinfo is None:  # SQLite: naive UTC
        created_at = created_at.replace(tzinfo=dt.UTC)
    waited = (now - created_at).total_seconds() if attempts == 1 and created_at else None
    return Claimed(str(batch_id), Lane(lane), waited)


@dataclass(frozen=True)
class ChunkFinished:
    batch_id: str
    #: True when this chunk was the batch's last one.
    batch_done: bool
    #: The chunk's lane (a bulk chunk that finished frees a slot of the bulk lane).
    lane: Lane = Lane.BULK
    #: Webhook deliveries the batch's end recorded (to hand over after the commit).
    deliveries: int = 0
    #: What this chunk added (for the metrics, counted once the caller committed).
    created: int = 0
    updated: int = 0
    failed: int = 0
    #: The errors this chunk added, by error code.
    error_codes: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False
    #: When ``batch_done``: the batch's final status and its seconds from receipt to end.
    batch_status: str | None = None
    batch_seconds: float | None = None


@dataclass
class _ChunkOutcome:
    """What finishing a chunk adds to its batch."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Records newly known to have failed (validation by the worker, or write time).
    rejected: int = 0
    #: Records whose outcome became known.
    processed: int = 0
    errors_added: int = 0
    warnings_added: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)


def _finish_in_batch(session: Session, chunk: ImportChunk, done: _ChunkOutcome) -> ChunkFinished:
    """Add a finished chunk's counts to its batch; complete the batch after its last chunk.

    The UPDATE takes the batch row's lock, so concurrent chunk completions of one
    batch are serialised and exactly one of them sees the last chunk finish.
    """
    finished, total, dry_run, received_at = session.execute(
        _ADD_TO_BATCH,
        {
            "batch_id": chunk.batch_id,
            "created": done.created,
            "updated": done.updated,
            "unchanged": done.unchanged,
            "rejected": done.rejected,
            "processed": done.processed,
            "errors": done.errors_added,
            "warnings": done.warnings_added,
        },
    ).one()
    batch_done = finished >= total
    deliveries = 0
    final_status: BatchStatus | None = None
    completed_at = utcnow()
    if batch_done:
        any_failed = session.execute(_FAILED_CHUNKS, {"batch_id": chunk.batch_id}).scalar()
        final_status = BatchStatus.FAILED if any_failed else BatchStatus.COMPLETED
        session.execute(
            _END_BATCH,
            {"batch_id": chunk.batch_id, "status": final_status, "completed_at": completed_at},
        )
        deliveries = webhooks.record_batch_end(session, chunk.batch_id)
    session.flush()
    if received_at is not None and received_at.tzinfo is None:  # SQLite: naive UTC
        received_at = received_at.replace(tzinfo=dt.UTC)
    return ChunkFinished(
        batch_id=chunk.batch_id,
        batch_done=batch_done,
        lane=Lane(chunk.lane),
        deliveries=deliveries,
        created=done.created,
        updated=done.updated,
        failed=done.rejected,
        error_codes=dict(done.error_codes),
        dry_run=bool(dry_run),
        batch_status=final_status.value if final_status is not None else None,
        batch_seconds=(completed_at - received_at).total_seconds()
        if final_status is not None and received_at is not None
        else None,
    )


def _merge(existing: bytes | None, added: Sequence[Problem]) -> tuple[bytes | None, int]:
    problems: list[Problem] = orjson.loads(existing) if existing else []
    problems.extend(added)
    problems.sort(key=lambda item: item["index"])
    return (outcomes.encode(problems) if problems else None), len(problems)


def _failed_at_accept(chunk: ImportChunk) -> set[int]:
    """Indexes of the chunk's records that the web already failed (duplicates)."""
    return {error["index"] for error in orjson.loads(chunk.errors)} if chunk.errors else set()


# A chunk's payload, validated values, stored rows and results are tens of thousands of
# objects without cycles: collected in the middle of the write, they cost about a third
# of a chunk's time (docs/benchmarks.md, section 12).
@gc_paused()
def write_chunk(session: Session, chunk_id: int) -> ChunkFinished | None:
    """Validate (when the web left it to the workers) and write a chunk's records,
    and record the outcome, all in the caller's transaction.

    The chunk row stays locked until the caller commits, so a duplicate delivery
    of the same task waits, then finds the chunk done. A dry-run batch's chunk is
    validated and planned (``action`` from a read of existing external_ids) but
    nothing is written.
    """
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None:
        return None
    batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == chunk.batch_id)).one()
    payload = [(index, record) for index, record in orjson.loads(chunk.payload or b"[]")]
    done = _ChunkOutcome(processed=len(payload))
    new_problems: list[Problem] = []
    # Records re-sent exactly as their object's last write (no validation, no write),
    # and the external_ids known absent (the write need not read them).
    before = SentBefore()
    if chunk.validated:
        to_write = payload
    else:
        org = session.get(Org, batch.org_id)
        choices = org.choices() if org else {}
        # Records the web already failed (duplicates) are validated for their other
        # problems, but never written, and were counted when the batch was accepted.
        already_failed = _failed_at_accept(chunk) & {index for index, _ in payload}
        digests: dict[int, str] = {}
        if not batch.dry_run and session.get_bind().dialect.name == "postgresql":
            sources = SourceDigests(batch.base_object, batch.mapping, batch.required, choices)
            digests = sources.digests([item for item in payload if item[0] not in already_failed])
            before = sent_before(
                session,
                org_id=batch.org_id,
                base_object=batch.base_object,
                seq=batch.seq,
                external_id_field=batch.mapping.get("external_id"),
                payload=payload,
                digests=digests,
            )
        same = before.same
        to_check = [item for item in payload if item[0] not in same] if same else payload
        checked = validate_records(
            [record for _, record in to_check],
            indexes=[index for index, _ in to_check],
            base_object=batch.base_object,
            mapping=batch.mapping,
            required=batch.required,
            org_choices=choices,
            check_duplicates=False,
        )
        newly_failed = {error["index"] for error in checked.errors} - already_failed
        to_write = [
            (index, values) for index, values in checked.valid if index not in already_failed
        ]
        for index, values in to_write:
            if index in digests:
                values[SOURCE_DIGEST] = digests[index]
        done.processed -= len(already_failed)
        done.rejected += len(newly_failed)
        done.warnings_added += len(checked.warnings)
        new_problems.extend(checked.errors)
        chunk.invalid_count += len(newly_failed)
        chunk.warnings, chunk.warning_count = _merge(chunk.warnings, checked.warnings)

    common: dict[str, Any] = {
        "org_id": batch.org_id,
        "base_object": batch.base_object,
        "mapping": batch.mapping,
        "seq": batch.seq,
        "records": to_write,
    }
    if batch.dry_run:
        outcome = plan_records(session, **common)
    else:
        outcome = write_records(session, **common, absent=before.absent)
    outcome.add_unchanged(before.same)
    new_problems.extend(outcome.errors)
    done.created, done.updated, done.unchanged = outcome.created, outcome.updated, outcome.unchanged
    done.rejected += outcome.rejected
    done.errors_added = len(new_problems)
    done.error_codes = dict(Counter(problem_["error_code"] for problem_ in new_problems))

    chunk.errors, chunk.error_count = _merge(chunk.errors, new_problems)
    chunk.results = outcomes.pack_results(outcome.results)
    chunk.created_count = outcome.created
    chunk.updated_count = outcome.updated
    chunk.unchanged_count = outcome.unchanged
    chunk.rejected_count = outcome.rejected
    chunk.status = ChunkStatus.DONE
    chunk.payload = None
    chunk.finished_at = utcnow()
    chunk.last_error = None
    session.flush()
    return _finish_in_batch(session, chunk, done)


def fail_chunk(session: Session, chunk_id: int, reason: str) -> ChunkFinished | None:
    """Give up on a chunk after its retries: its records fail with ``write_failed``.

    The payload is kept, so an operator can re-drive the chunk later.
    """
    chunk = _lock_chunk(session, chunk_id)
    if chunk is None:
        return None
    already_failed = set() if chunk.validated else _failed_at_accept(chunk)
    ext_key = "external_id"
    if not chunk.validated:
        mapping = session.scalar(
            sa.select(ImportBatch.mapping).where(ImportBatch.id == chunk.batch_id)
        )
        ext_key = (mapping or {}).get("external_id", ext_key)
    failures = [
        problem(
            index,
            record.get(ext_key),
            None,
            ErrorCode.WRITE_FAILED,
            "The record could not be written because of a server-side fault; "
            "nothing of it was stored. It can be re-driven by an operator or sent again.",
        )
        for index, record in orjson.loads(chunk.payload or b"[]")
        if index not in already_failed
    ]
    chunk.errors, chunk.error_count = _merge(chunk.errors, failures)
    chunk.rejected_count = len(failures)
    chunk.status = ChunkStatus.FAILED
    chunk.finished_at = utcnow()
    chunk.last_error = reason[:2000]
    session.flush()
    log.error("chunk %s of batch %s failed: %s", chunk.id, chunk.batch_id, reason)
    return _finish_in_batch(
        session,
        chunk,
        _ChunkOutcome(
            rejected=len(failures),
            processed=len(failures),
            errors_added=len(failures),
            error_codes={ErrorCode.WRITE_FAILED.value: len(failures)} if failures else {},
        ),
    )


def record_chunk_error(session: Session, chunk_id: int, reason: str) -> None:
    """Remember why the last attempt of a chunk failed (it will be retried)."""
    session.execute(
        sa.update(ImportChunk)
        .where(ImportChunk.id == chunk_id, ImportChunk.status == ChunkStatus.PROCESSING)
        .values(last_error=reason[:2000])
    )
