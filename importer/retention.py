"""Retention: the bookkeeping the service deletes, and when. Objects are never purged.

* A finished batch's per-record details (its chunks: results, errors, warnings, any
  payload left) ``IMPORTER_BATCH_DETAIL_RETENTION_DAYS`` (30) after it finished; the
  batch is then marked ``details_purged_at``.
* A finished batch's summary (its row) ``IMPORTER_BATCH_RETENTION_DAYS`` (365) after.
* An idempotency key once it expired (``IMPORTER_IDEMPOTENCY_TTL_SECONDS``).
* A finished webhook delivery ``IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS`` (30) after
  it was created.

Batches still queued or processing, and deliveries still pending, are live work and
never purged. A read of a batch's purged details answers ``410 batch_details_expired``;
its summary stays readable until it is purged in turn.

:func:`purge` works in small transactions (at most :data:`STEP` rows each, locked
with ``SKIP LOCKED`` so two purges never wait for each other, and touching only rows
no import writes), so it never holds up an import. The workers run it from their
maintenance timer (:class:`Purger`): at most once per ``IMPORTER_PURGE_INTERVAL_SECONDS``
for the whole deployment (a guarded update of the one ``purge_state`` row decides which
worker runs it), for at most :data:`WORKER_BUDGET_SECONDS` a run; ``importer purge``
runs it by hand, to the end.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import metrics
from importer.config import Settings
from importer.db import Database, utcnow
from importer.models import (
    DeliveryStatus,
    IdempotencyKey,
    ImportBatch,
    ImportChunk,
    PurgeState,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

#: Rows (batches for the two batch steps) per transaction.
STEP = 500
BATCH_STEP = 20
#: How long one run of the workers' timer may purge before it leaves the rest to the
#: next run (the timer also beats and relays; a backlog is caught up run by run).
WORKER_BUDGET_SECONDS = 2.0
#: The tables rows are deleted from (the label of ``importer_purged_rows_total``).
TABLES = metrics.PURGED_TABLES


@dataclass
class Purged:
    """What a purge deleted (or, in a dry run, would delete)."""

    #: Chunk rows: the per-record details of finished batches.
    import_chunks: int = 0
    #: Batches whose details were deleted (their summary is kept).
    batches_details: int = 0
    #: Batch rows (summaries) deleted.
    import_batches: int = 0
    idempotency_keys: int = 0
    webhook_deliveries: int = 0
    #: False when the time budget ran out with rows still due (the next run goes on).
    complete: bool = True

    def rows(self) -> dict[str, int]:
        """Rows deleted, by table."""
        return {table: getattr(self, table) for table in TABLES}

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"{self.import_chunks:,} chunk(s) of per-record details of "
            f"{self.batches_details:,} finished batch(es); {self.import_batches:,} batch "
            f"summaries; {self.idempotency_keys:,} expired idempotency key(s); "
            f"{self.webhook_deliveries:,} webhook deliveries"
        )


@dataclass(frozen=True)
class Cutoffs:
    """Rows older than these are due."""

    details: dt.datetime
    batches: dt.datetime
    deliveries: dt.datetime
    #: Idempotency keys expired before this (their own ``expires_at``).
    now: dt.datetime

    @classmethod
    def of(cls, settings: Settings, now: dt.datetime) -> Cutoffs:
        return cls(
            details=now - dt.timedelta(days=settings.batch_detail_retention_days),
            batches=now - dt.timedelta(days=settings.batch_retention_days),
            deliveries=now - dt.timedelta(days=settings.webhook_delivery_retention_days),
            now=now,
        )


def _details_due(cutoffs: Cutoffs) -> sa.ColumnElement[bool]:
    # The partial index ix_import_batches_details_kept's own condition, then the range.
    return sa.and_(
        ImportBatch.details_purged_at.is_(None),
        ImportBatch.completed_at.is_not(None),
        ImportBatch.completed_at < cutoffs.details,
    )


def _deliveries_due(cutoffs: Cutoffs) -> sa.ColumnElement[bool]:
    return sa.and_(
        WebhookDelivery.created_at < cutoffs.deliveries,
        WebhookDelivery.status != DeliveryStatus.PENDING,
    )


def _claim_due(
    session: Session,
    key: Any,
    due: sa.ColumnElement[bool],
    oldest_first: Any,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` ids (``key``) of rows that are ``due``, oldest first, locked;
    rows another purge holds are skipped, never waited for."""
    return list(
        session.scalars(
            sa.select(key)
            .where(due)
            .order_by(oldest_first)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


def purge_details_step(session: Session, cutoffs: Cutoffs) -> tuple[int, int]:
    """Delete the chunks of up to :data:`BATCH_STEP` batches whose details are due and
    mark them; returns ``(batches, chunks)``."""
    batch_ids = _claim_due(
        session, ImportBatch.id, _details_due(cutoffs), ImportBatch.completed_at, BATCH_STEP
    )
    if not batch_ids:
        return 0, 0
    deleted = _delete(session, sa.delete(ImportChunk).where(ImportChunk.batch_id.in_(batch_ids)))
    session.execute(
        sa.update(ImportBatch)
        .where(ImportBatch.id.in_(batch_ids))
        .values(details_purged_at=cutoffs.now)
        .execution_options(synchronize_session=False)
    )
    return len(batch_ids), deleted


def purge_batches_step(session: Session, cutoffs: Cutoffs) -> tuple[int, int]:
    """Delete up to :data:`BATCH_STEP` batch summaries that are due (and any chunks
    they still have); returns ``(batches, chunks)``."""
    batch_ids = _claim_due(
        session,
        ImportBatch.id,
        ImportBatch.completed_at < cutoffs.batches,
        ImportBatch.completed_at,
        BATCH_STEP,
    )
    if not batch_ids:
        return 0, 0
    chunks = _delete(session, sa.delete(ImportChunk).where(ImportChunk.batch_id.in_(batch_ids)))
    batches = _delete(session, sa.delete(ImportBatch).where(ImportBatch.id.in_(batch_ids)))
    return batches, chunks


def purge_keys_step(session: Session, cutoffs: Cutoffs) -> int:
    """Delete up to :data:`STEP` expired idempotency keys."""
    key_ids = _claim_due(
        session,
        IdempotencyKey.id,
        IdempotencyKey.expires_at < cutoffs.now,
        IdempotencyKey.expires_at,
        STEP,
    )
    if not key_ids:
        return 0
    return _delete(session, sa.delete(IdempotencyKey).where(IdempotencyKey.id.in_(key_ids)))


def purge_deliveries_step(session: Session, cutoffs: Cutoffs) -> int:
    """Delete up to :data:`STEP` finished webhook deliveries that are due."""
    delivery_ids = _claim_due(
        session, WebhookDelivery.id, _deliveries_due(cutoffs), WebhookDelivery.created_at, STEP
    )
    if not delivery_ids:
        return 0
    return _delete(session, sa.delete(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids)))


def _delete(session: Session, statement: sa.Delete) -> int:
    result: sa.CursorResult[object] = session.execute(  # type: ignore[assignment]
        statement.execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def count_due(session: Session, cutoffs: Cutoffs) -> Purged:
    """What :func:`purge` would delete now (``importer purge --dry-run``)."""
    due_batches = sa.select(ImportBatch.id).where(_details_due(cutoffs))
    old_batches = sa.select(ImportBatch.id).where(ImportBatch.completed_at < cutoffs.batches)

    def count(query: sa.Select[Any]) -> int:
        return int(session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)

    return Purged(
        import_chunks=count(
            sa.select(ImportChunk.id).where(
                sa.or_(ImportChunk.batch_id.in_(due_batches), ImportChunk.batch_id.in_(old_batches))
            )
        ),
        batches_details=count(due_batches),
        import_batches=count(old_batches),
        idempotency_keys=count(
            sa.select(IdempotencyKey.id).where(IdempotencyKey.expires_at < cutoffs.now)
        ),
        webhook_deliveries=count(sa.select(WebhookDelivery.id).where(_deliveries_due(cutoffs))),
    )


def purge(
    db: Database,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Purged:
    """Delete what is due, one small transaction at a time, until nothing is (or
    ``budget_seconds`` have passed: ``complete`` is then False)."""
    cutoffs = Cutoffs.of(settings, now or utcnow())
    deadline = None if budget_seconds is None else clock() + budget_seconds
    done = Purged()

    def out_of_time() -> bool:
        return deadline is not None and clock() >= deadline

    def run(step: Callable[[Session], bool]) -> bool:
        """Run ``step`` in transactions until it finds nothing; False when out of time."""
        while True:
            with db.session() as session:
                more = step(session)
            if not more:
                return True
            if out_of_time():
                return False

    def details(session: Session) -> bool:
        batches, chunks = purge_details_step(session, cutoffs)
        done.batches_details += batches
        done.import_chunks += chunks
        return batches > 0

    def batches(session: Session) -> bool:
        deleted, chunks = purge_batches_step(session, cutoffs)
        done.import_batches += deleted
        done.import_chunks += chunks
        return deleted > 0

    def keys(session: Session) -> bool:
        deleted = purge_keys_step(session, cutoffs)
        done.idempotency_keys += deleted
        return deleted > 0

    def deliveries(session: Session) -> bool:
        deleted = purge_deliveries_step(session, cutoffs)
        done.webhook_deliveries += deleted
        return deleted > 0

    try:
        for step in (details, batches, keys, deliveries):
            if not run(step):
                done.complete = False
                break
    finally:
        # Counted as committed, even when a later step failed.
        metrics.count_purged(done.rows())
    if any(done.rows().values()):
        log.info("purged %s%s", done.describe(), "" if done.complete else " (more to do)")
    return done


def claim_run(session: Session, settings: Settings, now: dt.datetime | None = None) -> bool:
    """Take the deployment's next purge run, if it is due: True for exactly one caller
    per ``IMPORTER_PURGE_INTERVAL_SECONDS`` (the guarded UPDATE of the one
    ``purge_state`` row decides, on any database)."""
    now = now or utcnow()
    result: sa.CursorResult[object] = session.execute(  # type: ignore[assignment]
        sa.update(PurgeState)
        .where(PurgeState.id == 1, PurgeState.next_run_at <= now)
        .values(next_run_at=now + dt.timedelta(seconds=settings.purge_interval_seconds))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        return True
    if session.get(PurgeState, 1) is None:  # the row is made by the migration; never lost
        session.add(
            PurgeState(
                id=1, next_run_at=now + dt.timedelta(seconds=settings.purge_interval_seconds)
            )
        )
        return True
    return False


class Purger:
    """The workers' purge, one run at most every ``IMPORTER_PURGE_INTERVAL_SECONDS``
    (this worker asks the database at most that often, and the database lets one
    worker of the deployment run per interval)."""

    def __init__(
        self, db: Database, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._next_try = -float("inf")

    def maybe_run(self) -> Purged | None:
        """Purge for up to :data:`WORKER_BUDGET_SECONDS` if this worker's turn has come;
        None when it has not. Never raises (the next run tries again)."""
        if self.clock() < self._next_try:
            return None
        self._next_try = self.clock() + self.settings.purge_interval_seconds
        try:
            with self.db.session() as session:
                if not claim_run(session, self.settings):
                    return None
            done = purge(
                self.db, self.settings, budget_seconds=WORKER_BUDGET_SECONDS, clock=self.clock
            )
            with self.db.session() as session:
                session.execute(
                    sa.update(PurgeState)
                    .where(PurgeState.id == 1)
                    .values(last_finished_at=utcnow())
                )
            return done
        except Exception:
            log.warning("retention purge failed; the next run tries again", exc_info=True)
            return None
