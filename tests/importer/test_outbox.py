"""The outbox's relay and sweep, as plain functions: what the broker never got, lost,
or was abandoned mid-write is handed over again."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from importer import batches
from importer.models import ChunkStatus, ImportChunk, Lane
from tests.factories import accept_records, recording_outbox, vendor


def accept(db, org, report, n=4, chunk_size=2, lane=Lane.INTERACTIVE):
    records = [vendor(i) for i in range(n)]
    return accept_records(db, org, report, records, chunk_size=chunk_size, lane=lane)[1]


def age(db, chunk_ids, **columns):
    """Move chunk timestamps into the past (instead of waiting for time to pass)."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with db.session() as session:
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id.in_(chunk_ids))
            .values(**{name: (past if value is None else value) for name, value in columns.items()})
        )


def test_relay_sends_what_the_web_could_not(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    outbox = recording_outbox(db, settings)
    assert outbox.relay() == 0  # still within the web's own grace period
    age(db, chunk_ids, created_at=None)
    assert outbox.relay() == 2
    assert outbox.broker.chunk_ids == chunk_ids
    assert [m.lane for m in outbox.broker.messages] == [Lane.INTERACTIVE] * 2
    assert outbox.relay() == 0  # marked as dispatched


def test_the_relay_leaves_the_bulk_backlog_to_the_scheduler(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report(), lane=Lane.BULK)
    age(db, chunk_ids, created_at=None)
    outbox = recording_outbox(db, settings)
    assert outbox.relay() == 0
    assert outbox.broker.chunk_ids == []


def test_relay_resends_after_the_broker_lost_its_queues(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    age(db, chunk_ids, created_at=None, dispatched_at=dt.datetime.now(dt.UTC))
    outbox = recording_outbox(db, settings)
    assert outbox.relay() == 0
    outbox.broker.lost = True  # a Redis restarted without persistence
    assert outbox.maintain().lost_queues is True
    assert outbox.broker.chunk_ids == chunk_ids
    assert outbox.maintain().relayed == 0  # the same broker, queues intact


def test_relay_resends_long_unstarted_chunks_of_either_lane(db, settings, org_and_key, make_report):
    report = make_report()
    interactive = accept(db, org_and_key[0], report)
    bulk = accept(db, org_and_key[0], report, lane=Lane.BULK)
    age(db, interactive + bulk, created_at=None, dispatched_at=None)
    outbox = recording_outbox(db, settings)
    assert outbox.relay() == 4
    assert sorted(outbox.broker.chunk_ids) == sorted(interactive + bulk)


def test_sweep_puts_abandoned_chunks_back(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    with db.session() as session:
        assert batches.claim_chunk(session, chunk_ids[0])
    outbox = recording_outbox(db, settings)
    assert outbox.sweep() == 0  # just started
    age(db, chunk_ids[:1], started_at=None)
    assert outbox.sweep() == 1
    with db.session() as session:
        chunk = session.get(ImportChunk, chunk_ids[0])
        assert (chunk.status, chunk.dispatched_at) == (ChunkStatus.PENDING, None)


def test_a_broker_down_during_maintenance_marks_nothing(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report(), lane=Lane.BULK)
    outbox = recording_outbox(db, settings)
    outbox.broker.down = True
    assert outbox.maintain().released == 0
    with db.session() as session:
        assert session.scalars(
            sa.select(ImportChunk.dispatched_at).where(ImportChunk.id.in_(chunk_ids))
        ).all() == [None, None]
    outbox.broker.down = False
    assert outbox.maintain().released == 2
    assert outbox.broker.chunk_ids == chunk_ids
