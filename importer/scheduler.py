"""The bulk lane's scheduler: which waiting chunks go to the broker next.

A chunk of the interactive lane (a batch whose caller waits for the answer) is sent
at once by ``importer.outbox``. A chunk of the bulk lane waits in the database, which
is the backlog, until :func:`release` picks it:

* at most ``slots`` bulk chunks are in flight (handed to the broker, or being
  written) at any time: the bulk processes of the live workers. Each worker runs more
  processes than that (``IMPORTER_INTERACTIVE_SLOTS`` more), so a small batch always
  finds a process free, whatever the bulk backlog;
* at most ``org_cap`` of them belong to one org (``IMPORTER_ORG_MAX_IN_FLIGHT``);
* a free slot goes to the org with waiting work that was served least recently
  (round robin, an org new to the lane first), so orgs flooding at once share the
  lane evenly, and an org that starts during another's flood has its first chunk
  running as soon as one chunk finishes;
* an org's chunks go in accept order (batch ``seq``, then position).

Release passes run after a bulk batch is accepted, after every bulk chunk finishes,
and on every worker's maintenance timer. Each pass first updates the one
``scheduler_state`` row: its row lock (PostgreSQL) or the database write lock it
takes (SQLite) makes concurrent passes run one at a time, so the caps hold however
many processes release at once. Like ``importer.batches``, the functions here only
add and flush; the caller commits, then sends what was released.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer.broker import ChunkMessage
from importer.config import Settings
from importer.db import utcnow
from importer.models import (
    BulkTurn,
    ChunkStatus,
    ImportChunk,
    Lane,
    Org,
    SchedulerState,
    WorkerHeartbeat,
)

#: A worker missing this many heartbeats in a row no longer counts (see
#: ``importer.monitoring``, which shows it as lost after the same time).
STALE_AFTER_BEATS = 5

_LIVE = ImportChunk.status.in_([ChunkStatus.PENDING, ChunkStatus.PROCESSING])
_BULK_LIVE = sa.and_(_LIVE, ImportChunk.lane == Lane.BULK)
#: Handed to the broker or being written.
_IN_FLIGHT = sa.or_(
    ImportChunk.status == ChunkStatus.PROCESSING, ImportChunk.dispatched_at.is_not(None)
)
#: In the backlog: not handed to the broker yet.
_WAITING = sa.and_(ImportChunk.status == ChunkStatus.PENDING, ImportChunk.dispatched_at.is_(None))


def live_worker_cutoff(settings: Settings, now: dt.datetime | None = None) -> dt.datetime:
    """Heartbeats older than this belong to workers that are gone."""
    stale = settings.relay_interval_seconds * STALE_AFTER_BEATS + 5
    return (now or utcnow()) - dt.timedelta(seconds=stale)


def bulk_slots(session: Session, settings: Settings) -> int:
    """Bulk chunks that may be in flight at once: the bulk processes of the live
    workers that consume the bulk lane, or, before any has reported,
    ``IMPORTER_WORKER_CONCURRENCY`` (what one worker of this deployment would have)."""
    live = session.scalar(
        sa.select(sa.func.sum(WorkerHeartbeat.bulk_slots)).where(
            WorkerHeartbeat.stopped_at.is_(None),
            WorkerHeartbeat.last_seen_at > live_worker_cutoff(settings),
        )
    )
    return int(live) if live else settings.worker_concurrency


def org_cap(settings: Settings, slots: int) -> int:
    """At most this many of one org's bulk chunks in flight: ``IMPORTER_ORG_MAX_IN_FLIGHT``,
    or, unset (0), every bulk slot (an org alone in the lane may use all of it; when
    others wait, the round robin shares the slots)."""
    return settings.org_max_in_flight or slots


def _take_the_lock(session: Session) -> int:
    """Serialise release passes; returns the round robin's clock."""
    turns = session.execute(
        sa.update(SchedulerState)
        .where(SchedulerState.id == 1)
        .values(turns=SchedulerState.turns)
        .returning(SchedulerState.turns)
    ).scalar()
    if turns is None:  # a database made without the migrations' first row
        session.add(SchedulerState(id=1, turns=0))
        session.flush()
        return 0
    return int(turns)


def in_flight_by_org(session: Session) -> dict[str, int]:
    return {
        org_id: int(count)
        for org_id, count in session.execute(
            sa.select(ImportChunk.org_id, sa.func.count())
            .where(_BULK_LIVE, _IN_FLIGHT)
            .group_by(ImportChunk.org_id)
        )
    }


def _waiting_orgs(session: Session) -> list[tuple[str, bool]]:
    """Orgs with bulk chunks in the backlog, least recently served first:
    (org id, whether it has a turn row yet)."""
    waiting = (
        sa.select(ImportChunk.org_id).where(_BULK_LIVE, _WAITING).distinct().subquery("waiting")
    )
    rows = session.execute(
        sa.select(waiting.c.org_id, BulkTurn.last_turn)
        .outerjoin(BulkTurn, BulkTurn.org_id == waiting.c.org_id)
        .order_by(BulkTurn.last_turn.asc().nulls_first(), waiting.c.org_id)
    )
    return [(org_id, last_turn is not None) for org_id, last_turn in rows]


def _next_chunks(session: Session, org_id: str, limit: int) -> list[ChunkMessage]:
    """The org's next waiting bulk chunks, in accept order."""
    rows = session.execute(
        sa.select(ImportChunk.id, ImportChunk.batch_id)
        .where(_BULK_LIVE, _WAITING, ImportChunk.org_id == org_id)
        .order_by(ImportChunk.batch_seq, ImportChunk.position)
        .limit(limit)
    )
    return [ChunkMessage(chunk_id, batch_id, org_id, Lane.BULK) for chunk_id, batch_id in rows]


def release(session: Session, *, slots: int, per_org: int) -> list[ChunkMessage]:
    """Pick the bulk chunks to hand to the broker now and mark them dispatched, in the
    caller's transaction; the caller commits, then sends them (a failed send clears
    the mark, see ``importer.outbox``)."""
    clock = _take_the_lock(session)
    in_flight = in_flight_by_org(session)
    free = slots - sum(in_flight.values())
    if free <= 0:
        return []
    orgs = _waiting_orgs(session)
    candidates: dict[str, list[ChunkMessage]] = {}
    picked: list[ChunkMessage] = []
    # Round robin: one chunk per org per round, in turn order, while slots are free.
    while free > 0:
        progressed = False
        for org_id, _ in orgs:
            if free == 0:
                break
            if in_flight.get(org_id, 0) >= per_org:
                continue
            if org_id not in candidates:
                candidates[org_id] = _next_chunks(
                    session, org_id, min(free, per_org - in_flight.get(org_id, 0))
                )
            if not candidates[org_id]:
                continue
            picked.append(candidates[org_id].pop(0))
            in_flight[org_id] = in_flight.get(org_id, 0) + 1
            free -= 1
            progressed = True
        if not progressed:
            break
    if not picked:
        return []
    now = utcnow()
    session.execute(
        sa.update(ImportChunk)
        .where(ImportChunk.id.in_([message.chunk_id for message in picked]), _WAITING)
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    last_turn: dict[str, int] = {}
    for turn, message in enumerate(picked, start=clock + 1):
        last_turn[message.org_id] = turn
    known = {org_id for org_id, has_turn in orgs if has_turn}
    for org_id, turn in last_turn.items():
        if org_id in known:
            session.execute(
                sa.update(BulkTurn)
                .where(BulkTurn.org_id == org_id)
                .values(last_turn=turn, released_at=now)
            )
        else:
            session.add(BulkTurn(org_id=org_id, last_turn=turn, released_at=now))
    session.execute(
        sa.update(SchedulerState).where(SchedulerState.id == 1).values(turns=clock + len(picked))
    )
    session.flush()
    return picked


# --- what operators see -----------------------------------------------------------


@dataclass(frozen=True)
class OrgBacklog:
    org_id: str
    #: Bulk chunks (and their records) waiting in the backlog.
    chunks: int
    records: int
    #: Bulk chunks handed to the broker or being written.
    in_flight: int
    org_name: str | None = None


@dataclass
class Backlog:
    """The bulk lane right now: what waits, what runs, and its biggest orgs."""

    chunks: int = 0
    records: int = 0
    in_flight: int = 0
    orgs: int = 0
    top: list[OrgBacklog] = field(default_factory=list)


def backlog(session: Session, top: int = 10) -> Backlog:
    """Read from the live chunks only (a partial index as small as the backlog)."""
    waiting = sa.case((_WAITING, 1), else_=0)
    rows = session.execute(
        sa.select(
            ImportChunk.org_id,
            sa.func.sum(waiting),
            sa.func.sum(sa.case((_WAITING, ImportChunk.record_count), else_=0)),
            sa.func.sum(sa.case((_IN_FLIGHT, 1), else_=0)),
        )
        .where(_BULK_LIVE)
        .group_by(ImportChunk.org_id)
    ).all()
    orgs = [
        OrgBacklog(org_id, int(chunks or 0), int(records or 0), int(flying or 0))
        for org_id, chunks, records, flying in rows
    ]
    found = Backlog(
        chunks=sum(org.chunks for org in orgs),
        records=sum(org.records for org in orgs),
        in_flight=sum(org.in_flight for org in orgs),
        orgs=sum(1 for org in orgs if org.chunks),
    )
    biggest = sorted(
        (org for org in orgs if org.chunks or org.in_flight),
        key=lambda org: (-org.records, -org.in_flight, org.org_id),
    )[:top]
    names: dict[str, str] = {}
    if biggest:
        query = sa.select(Org.id, Org.name).where(Org.id.in_([o.org_id for o in biggest]))
        names = {org_id: name for org_id, name in session.execute(query)}
    found.top = [
        OrgBacklog(o.org_id, o.chunks, o.records, o.in_flight, names.get(o.org_id)) for o in biggest
    ]
    return found
