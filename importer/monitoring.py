"""What operators watch: queue depths, live workers, batches by status, the oldest
queued batch, the relay's lag. One ``overview()`` feeds ``importer status``, the ops
page and the Prometheus gauges alike.

Workers report themselves: each worker's maintenance timer upserts a
``worker_heartbeats`` row (``beat``); a worker whose last beat is older than
``STALE_AFTER`` intervals is shown as lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer.config import Settings
from importer.db import unix, utcnow
from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk, WorkerHeartbeat

log = logging.getLogger(__name__)

#: A worker missing this many heartbeats in a row is considered gone.
STALE_AFTER = 5


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


@dataclass
class Overview:
    queues: dict[str, int | None]
    workers: list[WorkerState]
    batches: dict[str, int]
    oldest_queued_batch: dict[str, Any] | None
    #: Seconds the oldest chunk not yet handed to the broker has waited (0 if none).
    relay_lag_seconds: float
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
    stopped: bool = False,
) -> None:
    """Record a worker's sign of life (or its clean shutdown)."""
    now = utcnow()
    row = session.get(WorkerHeartbeat, node)
    if row is None:
        row = WorkerHeartbeat(node=node)
        session.add(row)
    row.pid, row.concurrency, row.queues = pid, concurrency, queues
    row.started_at, row.last_seen_at = started_at, now
    row.stopped_at = now if stopped else None
    session.flush()


def workers(session: Session, settings: Settings, keep_for: float = 24 * 3600) -> list[WorkerState]:
    """Workers seen in the last ``keep_for`` seconds, live ones first."""
    now = utcnow()
    stale = dt.timedelta(seconds=settings.relay_interval_seconds * STALE_AFTER + 5)
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
        elif row.last_seen_at < now - stale:
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
            )
        )
    order = {"online": 0, "lost": 1, "stopped": 2}
    return sorted(found, key=lambda worker: (order[worker.state], worker.node))


def queue_depths(settings: Settings, queues: tuple[str, ...]) -> dict[str, int | None]:
    """Messages waiting in each broker queue (None when the broker cannot be asked)."""
    if settings.redis_url:
        try:
            import redis

            client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
            pipe = client.pipeline()
            for name in queues:
                pipe.llen(name)
            return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
        except Exception:
            log.warning("could not read the queue depths from Redis", exc_info=True)
            return dict.fromkeys(queues)
    # The embedded broker: one file per message, named "<...>.<queue>.msg".
    folder = Path(settings.broker_folder)
    files = [path.name for path in folder.glob("*.msg")] if folder.is_dir() else []
    return {name: sum(1 for file in files if file.endswith(f".{name}.msg")) for name in queues}


def batches_by_status(session: Session) -> dict[str, int]:
    counts = dict(
        session.execute(
            sa.select(ImportBatch.status, sa.func.count()).group_by(ImportBatch.status)
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
            ImportChunk.status == ChunkStatus.PENDING, ImportChunk.dispatched_at.is_(None)
        )
    )
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite's MIN() comes back as a naive value
        oldest = oldest.replace(tzinfo=dt.UTC)
    return max((utcnow() - oldest).total_seconds(), 0.0)


def overview(session: Session, settings: Settings, queues: tuple[str, ...]) -> Overview:
    return Overview(
        queues=queue_depths(settings, queues),
        workers=workers(session, settings),
        batches=batches_by_status(session),
        oldest_queued_batch=oldest_queued_batch(session),
        relay_lag_seconds=round(relay_lag_seconds(session), 1),
    )
