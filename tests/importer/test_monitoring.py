"""What operators watch: workers, queues, the bulk lane's backlog, batches, the relay's
lag."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from importer import batches, monitoring
from importer.broker import CeleryBroker
from importer.db import utcnow
from importer.models import ImportBatch, ImportChunk, Lane, WorkerHeartbeat
from importer.notify import PollingNotifier
from tests.factories import RecordingBroker, accept_records, recording_outbox, vendor
from worker.tasks import run_chunk


def accept(db, org, report, n=4, chunk_size=2):
    return accept_records(db, org, report, [vendor(i) for i in range(n)], chunk_size=chunk_size)


def beat(db, node, **extra):
    with db.session() as session:
        monitoring.beat(
            session,
            node=node,
            pid=41,
            concurrency=2,
            queues=["interactive", "bulk"],
            started_at=utcnow(),
            **extra,
        )


def test_workers_are_online_lost_or_stopped(db, settings, org_and_key, make_report):
    beat(db, "celery@a")
    beat(db, "celery@b")
    beat(db, "celery@c", stopped=True)
    with db.session() as session:
        session.execute(
            sa.update(WorkerHeartbeat)
            .where(WorkerHeartbeat.node == "celery@b")
            .values(last_seen_at=utcnow() - dt.timedelta(minutes=5))
        )
    _, (chunk_id, _) = accept(db, org_and_key[0], make_report())
    with db.session() as session:
        batches.claim_chunk(session, chunk_id, "celery@a")
    with db.session() as session:
        found = {w.node: (w.state, w.processing) for w in monitoring.workers(session, settings)}
        overview = monitoring.overview(session, settings, RecordingBroker())
    assert found == {"celery@a": ("online", 1), "celery@b": ("lost", 0), "celery@c": ("stopped", 0)}
    assert overview.live_workers == 1


def test_batches_the_oldest_queued_one_and_the_relay_lag(db, settings, org_and_key, make_report):
    report = make_report()
    first, first_chunks = accept_records(
        db, org_and_key[0], report, [vendor(1), vendor(2)], lane=Lane.INTERACTIVE
    )
    accept(db, org_and_key[0], report)  # bulk: waits in the backlog, no relay lag
    past = utcnow() - dt.timedelta(seconds=90)
    with db.session() as session:
        session.execute(sa.update(ImportChunk).values(created_at=past))
        overview = monitoring.overview(session, settings, RecordingBroker())
    assert overview.batches == {"queued": 2, "processing": 0, "completed": 0, "failed": 0}
    assert overview.oldest_queued_batch["batch_id"] == first
    assert 90 <= overview.relay_lag_seconds < 3600
    with db.session() as session:
        session.execute(sa.update(ImportChunk).values(dispatched_at=utcnow()))
        assert monitoring.relay_lag_seconds(session) == 0


def test_batches_are_counted_live_and_over_the_last_hour_only(
    db, settings, org_and_key, make_report
):
    """Queued and processing batches are counted however old; finished ones only when
    they finished in the last hour (the history is never scanned)."""
    report = make_report()
    notifier = PollingNotifier()
    finished = []
    for _ in range(4):
        batch_id, chunk_ids = accept(db, org_and_key[0], report, n=2)
        for chunk_id in chunk_ids:
            run_chunk(recording_outbox(db), notifier, chunk_id)
        finished.append(batch_id)
    old_queued, _ = accept(db, org_and_key[0], report)
    now = utcnow()
    with db.session() as session:
        session.execute(
            sa.update(ImportBatch)
            .where(ImportBatch.id.in_(finished[:3]))
            .values(completed_at=now - dt.timedelta(hours=2))
        )
        session.execute(
            sa.update(ImportBatch)
            .where(ImportBatch.id == old_queued)
            .values(received_at=now - dt.timedelta(days=30))
        )
        counted = monitoring.batches_by_status(session, now=now)
    assert counted == {"queued": 1, "processing": 0, "completed": 1, "failed": 0}


def test_the_backlog_counts_waiting_bulk_work_per_org(db, settings, make_report, make_org):
    busy, _ = make_org("Busy")
    quiet, _ = make_org("Quiet")
    accept_records(db, busy, make_report(org=busy), [vendor(i) for i in range(6)], chunk_size=2)
    accept_records(db, quiet, make_report(org=quiet), [vendor(1)], chunk_size=2)
    _, interactive = accept_records(
        db, quiet, make_report(org=quiet, slug="now"), [vendor(2)], lane=Lane.INTERACTIVE
    )
    with db.session() as session:  # one of Busy's chunks handed over: in flight
        first = session.scalar(
            sa.select(ImportChunk.id)
            .where(ImportChunk.org_id == busy.id)
            .order_by(ImportChunk.id)
            .limit(1)
        )
        session.execute(
            sa.update(ImportChunk).where(ImportChunk.id == first).values(dispatched_at=utcnow())
        )
    with db.session() as session:
        found = monitoring.overview(session, settings, RecordingBroker()).backlog
    assert (found.chunks, found.records, found.in_flight, found.orgs) == (3, 5, 1, 2)
    assert [(o.org_id, o.chunks, o.records, o.in_flight) for o in found.top] == [
        (busy.id, 2, 4, 1),
        (quiet.id, 1, 1, 0),
    ]


def test_embedded_queue_depths_count_message_files(settings):
    folder = settings.broker_folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("1_a.bulk.msg", "2_b.bulk.msg", "3_c.webhooks.msg", "x.bulk.lock"):
        (folder / name).write_text("{}")
    assert CeleryBroker(settings).depths() == {"interactive": 0, "bulk": 2, "webhooks": 1}


def test_an_unreachable_redis_gives_unknown_depths(settings):
    unreachable = settings.replace(redis_url="redis://127.0.0.1:1/0")
    assert CeleryBroker(unreachable).depths() == {
        "interactive": None,
        "bulk": None,
        "webhooks": None,
    }
