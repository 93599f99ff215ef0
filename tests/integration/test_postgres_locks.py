"""Row locks on PostgreSQL: a chunk is written exactly once whoever else holds it."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from importer.models import OBJECT_TABLES, BatchStatus, ImportBatch, ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, schema_drift, vendor
from tests.integration.factories import vendor_report, wait_until, waiting_on_a_lock
from worker.tasks import run_chunk


def accept(db, n=3):
    org, report = vendor_report(db, "locks")
    batch_id, chunk_ids = accept_records(
        db, org, report, [vendor(i) for i in range(n)], chunk_size=n
    )
    return org.id, batch_id, chunk_ids[0]


def batch(db, batch_id):
    with db.session() as session:
        return session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()


def test_a_message_arriving_while_the_web_still_holds_the_chunk_is_not_dropped(pg):
    """The web marks a chunk dispatched right after sending it; a fast worker must wait
    for that update, not skip the chunk."""
    _, batch_id, chunk_id = accept(pg)
    holder = pg.new_session()
    holder.execute(sa.update(ImportChunk).where(ImportChunk.id == chunk_id).values(attempts=0))
    worker = threading.Thread(
        target=run_chunk, args=(recording_outbox(pg), PollingNotifier(), chunk_id)
    )
    worker.start()
    wait_until(
        lambda: waiting_on_a_lock(pg) or not worker.is_alive(),
        what="the worker to wait for the row lock",
    )
    holder.commit()
    holder.close()
    worker.join(30)
    done = batch(pg, batch_id)
    assert (done.status, done.created_count) == (BatchStatus.COMPLETED, 3)


def test_the_same_chunk_delivered_twice_at_once_is_written_once(pg):
    org_id, batch_id, chunk_id = accept(pg, n=50)
    # Injected fault: two workers get the same message at the same moment.
    barrier = threading.Barrier(2)
    outcomes = []

    def deliver():
        barrier.wait()
        outcomes.append(run_chunk(recording_outbox(pg), PollingNotifier(), chunk_id))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    done = batch(pg, batch_id)
    assert (done.created_count, done.updated_count, done.failed_count) == (50, 0, 0)
    assert done.processed_count == done.received_count == 50
    assert sum(1 for outcome in outcomes if outcome is not None) == 1
    table = OBJECT_TABLES["vendor"]
    with pg.session() as session:
        rows = session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.org_id == org_id)
        )
    assert rows == 50


def test_migrations_match_the_models_on_postgresql(pg):
    assert schema_drift(pg.url) == []
