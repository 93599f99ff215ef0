"""What operators watch: queue depths per lane, live workers, the bulk lane's backlog
(and its biggest orgs), batches by status, the oldest queued batch, the relay's lag.
One ``overview()`` feeds ``importer status``, the ops page and the Prometheus gauges
alike. It reads only what is live (queued and running work, workers, the last hour),
each through an index, so it costs the same after a million batches as after ten.

Workers report themselves: each worker's maintenance timer upserts a
``worker_heartbeats`` row (``beat``); a worker whose last beat is older than
``importer.scheduler.STALE_AFTER_BEATS`` intervals is shown as lost (and its
processes no longer count as bulk slots).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer.broker import Broker
from importer.config import Settings
from importer.db import unix, utcnow
from importer.models import (
    BatchStatus,
    ChunkStatus,
    ImportBatch,
    ImportChunk,
    Lane,
    WorkerHeartbeat,
)
from importer.scheduler import Backlog, backlog, live_worker_cutoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerState:
    node: str
    pid: int
    concurrency: int
    queues: list[str]
    started_at: int | None
    last_seen_at: int | None
    #: "online", "lost" (no heartbeat for a while) or "stopped" (shut down cleanly).
    state: str
    #: Chunks this worker holds in "processing" right now.
    processing: int = 0
    #: Of ``concurrency``, the processes the bulk lane may fill.
    bulk_slots: int = 0


@dataclass
class Overview:
    queues: dict[str, int | None]
    workers: list[WorkerState]
    batches: dict[str, int]
    oldest_queued_batch: dict[str, Any] | None
    #: Seconds the oldest interactive chunk not yet handed to the broker has waited
    #: (0 if none); bulk chunks wait in the backlog by design (see ``backlog``).
    relay_lag_seconds: float
    #: The bulk lane: chunks and records waiting, in flight, orgs waiting, top orgs.
    backlog: Backlog = field(default_factory=Backlog)
    generated_at: int = field(default_factory=lambda: unix(utcnow()) or 0)

    @property
    def live_workers(self) -> int:
        return sum(1 for worker in self.workers if worker.state == "online")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["live_workers"] = self.live_workers
        return data


def beat(
    session: Session,
    *,
    node: str,
    pid: int,
    concurrency: int,
    queues: list[str],
    started_at: dt.datetime,
    bulk_slots: int = 0,
    stopped: bool = False,
) -> None:
    """Record a worker's sign of life (or its clean shutdown)."""
    now = utcnow()
    row = session.get(WorkerHeartbeat, node)
    if row is None:
        row = WorkerHeartbeat(node=node)
        session.add(row)
    row.pid, row.concurrency, row.queues = pid, concurrency, queues
    row.bulk_slots = bulk_slots
    row.started_at, row.last_seen_at = started_at, now
    row.stopped_at = now if stopped else None
    session.flush()


def workers(session: Session, settings: Settings, keep_for: float = 24 * 3600) -> list[WorkerState]:
    """Workers seen in the last ``keep_for`` seconds, live ones first."""
    now = utcnow()
    live_since = live_worker_cutoff(settings, now)
    busy = dict(
        session.execute(
            sa.select(ImportChunk.claimed_by, sa.func.count())
            .where(ImportChunk.status == ChunkStatus.PROCESSING)
            .group_by(ImportChunk.claimed_by)
        ).all()
    )
    rows = session.scalars(
        sa.select(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at > now - dt.timedelta(seconds=keep_for))
        .order_by(WorkerHeartbeat.node)
    )
    found = []
    for row in rows:
        if row.stopped_at is not None:
            state = "stopped"
        elif row.last_seen_at < live_since:
            state = "lost"
        else:
            state = "online"
        found.append(
            WorkerState(
                node=row.node,
                pid=row.pid,
                concurrency=row.concurrency,
                queues=list(row.queues),
                started_at=unix(row.started_at),
                last_seen_at=unix(row.last_seen_at),
                state=state,
                processing=int(busy.get(row.node, 0)) if state == "online" else 0,
                bulk_slots=row.bulk_slots,
            )
        )
    order = {"online": 0, "lost": 1, "stopped": 2}
    return sorted(found, key=lambda worker: (order[worker.state], worker.node))


#: Finished batches are counted over this window only: the operator views read what
#: is live, never the history (which grows with every batch).
FINISHED_WINDOW_SECONDS = 3600


def batches_by_status(session: Session, now: dt.datetime | None = None) -> dict[str, int]:
    """Queued and processing batches (all of them: live work), and the batches that
    completed or failed in the last :data:`FINISHED_WINDOW_SECONDS`. Each is an index
    range: ``(status, received_at)`` for the live ones, ``completed_at`` for the rest."""
    since = (now or utcnow()) - dt.timedelta(seconds=FINISHED_WINDOW_SECONDS)
    live = [BatchStatus.QUEUED, BatchStatus.PROCESSING]
    counts = dict(
        session.execute(
            sa.select(ImportBatch.status, sa.func.count())
            .where(ImportBatch.status.in_(live))
            .group_by(ImportBatch.status)
        ).all()
    )
    counts.update(
        session.execute(
            sa.select(ImportBatch.status, sa.func.count())
            .where(ImportBatch.completed_at >= since)
            .group_by(ImportBatch.status)
        ).all()
    )
    return {status.value: int(counts.get(status, 0)) for status in BatchStatus}


def oldest_queued_batch(session: Session) -> dict[str, Any] | None:
    """The batch that has waited longest without a worker starting it."""
    row = session.execute(
        sa.select(ImportBatch.id, ImportBatch.org_id, ImportBatch.slug, ImportBatch.received_at)
        .where(ImportBatch.status == BatchStatus.QUEUED)
        .order_by(ImportBatch.received_at)
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    age = (utcnow() - row.received_at).total_seconds()
    return {
        "batch_id": row.id,
        "org_id": row.org_id,
        "slug": row.slug,
        "received_at": unix(row.received_at),
        "age_seconds": round(age, 1),
    }


def relay_lag_seconds(session: Session) -> float:
    oldest = session.scalar(
        sa.select(sa.func.min(ImportChunk.created_at)).where(
            ImportChunk.status == ChunkStatus.PENDING,
            ImportChunk.dispatched_at.is_(None),
            ImportChunk.lane == Lane.INTERACTIVE,
        )
    )
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite's MIN() comes back as a naive value
        oldest = oldest.replace(tzinfo=dt.UTC)
    return max((utcnow() - oldest).total_seconds(), 0.0)


def overview(session: Session, settings: Settings, broker: Broker) -> Overview:
    return Overview(
        queues=broker.depths(),
        workers=workers(session, settings),
        batches=batches_by_status(session),
        oldest_queued_batch=oldest_queued_batch(session),
        relay_lag_seconds=round(relay_lag_seconds(session), 1),
        backlog=backlog(session),
    )
