"""What operators watch: workers, queues, batches, the relay's lag."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from importer import batches, monitoring
from importer.db import utcnow
from importer.models import ImportChunk, WorkerHeartbeat
from tests.conftest import accept_records, vendor


def accept(db, org, report, n=4, chunk_size=2):
    return accept_records(db, org, report, [vendor(i) for i in range(n)], chunk_size=chunk_size)


def beat(db, node, **extra):
    with db.session() as session:
        monitoring.beat(
            session,
            node=node,
            pid=41,
            concurrency=2,
            queues=["imports"],
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
        overview = monitoring.overview(session, settings, ("imports",))
    assert found == {"celery@a": ("online", 1), "celery@b": ("lost", 0), "celery@c": ("stopped", 0)}
    assert overview.live_workers == 1


def test_batches_the_oldest_queued_one_and_the_relay_lag(db, settings, org_and_key, make_report):
    report = make_report()
    first, first_chunks = accept(db, org_and_key[0], report)
    accept(db, org_and_key[0], report)
    past = utcnow() - dt.timedelta(seconds=90)
    with db.session() as session:
        session.execute(
            sa.update(ImportChunk).where(ImportChunk.id.in_(first_chunks)).values(created_at=past)
        )
        overview = monitoring.overview(session, settings, ("imports",))
    assert overview.batches == {"queued": 2, "processing": 0, "completed": 0, "failed": 0}
    assert overview.oldest_queued_batch["batch_id"] == first
    assert overview.relay_lag_seconds >= 90
    with db.session() as session:
        session.execute(sa.update(ImportChunk).values(dispatched_at=utcnow()))
        assert monitoring.relay_lag_seconds(session) == 0


def test_embedded_queue_depths_count_message_files(settings):
    folder = settings.broker_folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("1_a.imports.msg", "2_b.imports.msg", "3_c.webhooks.msg", "x.imports.lock"):
        (folder / name).write_text("{}")
    assert monitoring.queue_depths(settings, ("imports", "webhooks")) == {
        "imports": 2,
        "webhooks": 1,
    }


def test_an_unreachable_redis_gives_unknown_depths(settings):
    unreachable = settings.replace(redis_url="redis://127.0.0.1:1/0")
    assert monitoring.queue_depths(unreachable, ("imports",)) == {"imports": None}
