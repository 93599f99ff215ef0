"""The outbox relay and the sweep, as plain functions."""

from __future__ import annotations

import datetime as dt

import fakeredis
import sqlalchemy as sa

from importer import batches
from importer.models import ChunkStatus, ImportChunk
from tests.conftest import accept_records, vendor
from worker.relay import broker_lost_queues, relay_once, sweep_once


def accept(db, org, report, n=4, chunk_size=2):
    records = [vendor(i) for i in range(n)]
    return accept_records(db, org, report, records, chunk_size=chunk_size)[1]


def age(db, chunk_ids, **columns):
    """Move chunk timestamps into the past (instead of waiting for time to pass)."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with db.session() as session:
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id.in_(chunk_ids))
            .values(**{name: (past if value is None else value) for name, value in columns.items()})
        )


class Recorder:
    def __init__(self):
        self.sent = []

    def __call__(self, chunk_ids):
        self.sent.extend(chunk_ids)


def test_relay_sends_what_the_web_could_not(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    send = Recorder()
    assert relay_once(db, send, settings) == 0  # still within the web's own grace period
    age(db, chunk_ids, created_at=None)
    assert relay_once(db, send, settings) == 2
    assert send.sent == chunk_ids
    assert relay_once(db, send, settings) == 0  # marked as dispatched


def test_relay_resends_after_the_broker_lost_its_queues(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    age(db, chunk_ids, created_at=None, dispatched_at=dt.datetime.now(dt.UTC))
    send = Recorder()
    assert relay_once(db, send, settings) == 0
    redis = fakeredis.FakeRedis()
    assert broker_lost_queues(redis) is True  # an empty Redis: the marker is missing
    assert relay_once(db, send, settings, broker_lost_queues=True) == 2
    assert broker_lost_queues(redis) is False  # the same Redis, queues intact
    redis.flushall()  # a restart without persistence
    assert broker_lost_queues(redis) is True


def test_relay_resends_long_unstarted_chunks(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    age(db, chunk_ids, created_at=None, dispatched_at=None)
    send = Recorder()
    assert relay_once(db, send, settings) == 2


def test_sweep_puts_abandoned_chunks_back(db, settings, org_and_key, make_report):
    chunk_ids = accept(db, org_and_key[0], make_report())
    with db.session() as session:
        assert batches.claim_chunk(session, chunk_ids[0])
    assert sweep_once(db, settings) == 0  # just started
    age(db, chunk_ids[:1], started_at=None)
    assert sweep_once(db, settings) == 1
    with db.session() as session:
        chunk = session.get(ImportChunk, chunk_ids[0])
        assert (chunk.status, chunk.dispatched_at) == (ChunkStatus.PENDING, None)
