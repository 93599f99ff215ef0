"""What the ops page (``app/ops.py``) shows besides :func:`importer.monitoring.overview`:
recent batches of every org, failed batches, the workers worth listing, and the
workers' throughput over the last hour. Every query is bounded: by a limit on an
indexed order, or by the last hour of ``import_chunks.finished_at`` (indexed),
aggregated per minute in SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer.broker import Broker
from importer.config import Settings
from importer.db import unix, utcnow
from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk, Org
from importer.monitoring import overview

#: Batches on the page: every running one (up to RUNNING_BATCHES) and the newest
#: FINISHED_BATCHES finished ones. A push of a large file is many batches: the finished
#: ones are kept few, so the list stays short whatever was sent.
RUNNING_BATCHES = 25
FINISHED_BATCHES = 10
FAILED_BATCHES = 20
THROUGHPUT_MINUTES = 60
#: Workers stopped (or lost) longer ago than this are left off the page
#: (``importer status`` lists them for a day).
GONE_WORKERS_SHOWN_SECONDS = 3600


def batch_row(batch: ImportBatch, org_name: str | None, now: dt.datetime) -> dict[str, Any]:
    """One batch as the ops page shows it."""
    finished = batch.completed_at or now
    return {
        "batch_id": batch.id,
        "org_id": batch.org_id,
        "org_name": org_name,
        "slug": batch.slug,
        "report_name": batch.report_name,
        "base_object": batch.base_object,
        "dry_run": batch.dry_run,
        "status": BatchStatus(batch.status).value,
        #: Completed, but not one record written: shown apart from a good completion.
        "all_failed": batch.status == BatchStatus.COMPLETED
        and batch.received_count > 0
        and batch.failed_count >= batch.received_count,
        "received_count": batch.received_count,
        "created_count": batch.created_count,
        "updated_count": batch.updated_count,
        "failed_count": batch.failed_count,
        "processed_count": batch.processed_count,
        "chunk_count": batch.chunk_count,
        "chunks_finished": batch.chunks_finished,
        "received_at": unix(batch.received_at),
        "completed_at": unix(batch.completed_at),
        "age_seconds": round((now - batch.received_at).total_seconds(), 1),
        "duration_seconds": round((finished - batch.received_at).total_seconds(), 1),
    }


def _with_org(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.add_columns(Org.name).join(Org, Org.id == ImportBatch.org_id)


def recent_batches(
    session: Session,
    running: int = RUNNING_BATCHES,
    finished: int = FINISHED_BATCHES,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Every queued or processing batch (up to ``running``) and the newest ``finished``
    finished ones, newest first."""
    now = now or utcnow()
    live = [BatchStatus.QUEUED, BatchStatus.PROCESSING]
    rows = [
        *session.execute(
            _with_org(
                sa.select(ImportBatch)
                .where(ImportBatch.status.in_(live))
                .order_by(ImportBatch.seq.desc())
                .limit(running)
            )
        ).all(),
        *session.execute(
            _with_org(
                sa.select(ImportBatch)
                .where(ImportBatch.status.not_in(live))
                .order_by(ImportBatch.seq.desc())
                .limit(finished)
            )
        ).all(),
    ]
    # Two reads: a batch that finished between them is in both (once is enough).
    unique = {batch.id: (batch, org_name) for batch, org_name in rows}.values()
    ordered = sorted(unique, key=lambda pair: pair[0].seq, reverse=True)
    return [batch_row(batch, org_name, now) for batch, org_name in ordered]


def failed_batches(
    session: Session, limit: int = FAILED_BATCHES, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """The newest failed batches, each with its failed chunks and the first one's error."""
    now = now or utcnow()
    rows = session.execute(
        _with_org(
            sa.select(ImportBatch)
            .where(ImportBatch.status == BatchStatus.FAILED)
            .order_by(ImportBatch.received_at.desc())
            .limit(limit)
        )
    ).all()
    if not rows:
        return []
    chunks = session.execute(
        sa.select(ImportChunk.batch_id, ImportChunk.position, ImportChunk.last_error)
        .where(
            ImportChunk.batch_id.in_([batch.id for batch, _ in rows]),
            ImportChunk.status == ChunkStatus.FAILED,
        )
        .order_by(ImportChunk.batch_id, ImportChunk.position)
    ).all()
    failed_chunks: dict[str, int] = {}
    first_error: dict[str, str | None] = {}
    for batch_id, _position, last_error in chunks:
        failed_chunks[batch_id] = failed_chunks.get(batch_id, 0) + 1
        first_error.setdefault(batch_id, last_error)
    items = []
    for batch, org_name in rows:
        item = batch_row(batch, org_name, now)
        item["failed_chunks"] = failed_chunks.get(batch.id, 0)
        item["last_error"] = short_error(first_error.get(batch.id))
        items.append(item)
    return items


#: "ProgrammingError: (psycopg.errors.RaiseException) the message": SQLAlchemy's wrapper.
_WRAPPED_DBAPI_ERROR = re.compile(r"^\w+: \((?:[\w]+\.)*(\w+)\) (.*)$")


def short_error(text: str | None, limit: int = 300) -> str | None:
    """An error as the page shows it: its first line (a database error goes on with the
    whole statement), the database driver's own exception named instead of SQLAlchemy's
    wrapper. ``importer batches show`` has it whole."""
    if not text or not text.strip():
        return text
    line = text.strip().splitlines()[0]
    wrapped = _WRAPPED_DBAPI_ERROR.match(line)
    if wrapped:
        line = f"{wrapped.group(1)}: {wrapped.group(2)}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _minute_bucket(session: Session) -> sa.ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.date_trunc("minute", ImportChunk.finished_at)
    return sa.func.strftime("%Y-%m-%d %H:%M", ImportChunk.finished_at)


def _as_minute(value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite: "YYYY-MM-DD HH:MM", in UTC
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
    moment: dt.datetime = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(second=0, microsecond=0)


def throughput(
    session: Session, minutes: int = THROUGHPUT_MINUTES, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Records the workers finished (written or failed) per minute, over the last
    ``minutes`` minutes, oldest first, the current minute last; minutes without any are
    zero."""
    now = (now or utcnow()).astimezone(dt.UTC)
    current = now.replace(second=0, microsecond=0)
    start = current - dt.timedelta(minutes=minutes - 1)
    bucket = _minute_bucket(session)
    rows = session.execute(
        sa.select(bucket, sa.func.sum(ImportChunk.record_count))
        .where(ImportChunk.finished_at >= start)
        .group_by(bucket)
    ).all()
    per_minute = {_as_minute(minute): int(total or 0) for minute, total in rows}
    series = [
        {"at": unix(minute), "records": per_minute.get(minute, 0)}
        for minute in (start + dt.timedelta(minutes=i) for i in range(minutes))
    ]
    counts: list[int] = [int(point["records"] or 0) for point in series]
    last_60s = session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(ImportChunk.record_count), 0)).where(
            ImportChunk.finished_at >= now - dt.timedelta(seconds=60)
        )
    )
    return {
        "window_minutes": minutes,
        "minutes": series,
        "total": sum(counts),
        "peak": max(counts, default=0),
        #: Records finished in the 60 seconds before ``now`` (the current rate).
        "last_60s": int(last_60s or 0),
    }


def shown_workers(
    workers: list[dict[str, Any]], now: dt.datetime, keep_for: float = GONE_WORKERS_SHOWN_SECONDS
) -> list[dict[str, Any]]:
    """The workers the page lists: every online one, and those stopped or lost less
    than ``keep_for`` seconds ago (by their last heartbeat)."""
    since = (unix(now) or 0) - keep_for
    return [
        worker
        for worker in workers
        if worker["state"] == "online" or (worker["last_seen_at"] or 0) >= since
    ]


def console_data(session: Session, settings: Settings, broker: Broker) -> dict[str, Any]:
    """Everything the ops page shows, as one JSON-ready object. ``overview`` is
    ``importer status --json``; ``workers`` is the part of its workers the page lists,
    ``workers_hidden`` how many it leaves off."""
    now = utcnow()
    summary = overview(session, settings, broker).as_dict()
    workers = shown_workers(summary["workers"], now)
    return {
        "generated_at": unix(now),
        "overview": summary,
        "workers": workers,
        "workers_hidden": len(summary["workers"]) - len(workers),
        "batches": recent_batches(session, now=now),
        "failed": failed_batches(session, now=now),
        "throughput": throughput(session, now=now),
    }
