"""Re-drive on PostgreSQL: a chunk a worker is writing (its row lock held) is left
alone, one nobody holds is sent again; two re-drives at once take a failed chunk's
counts back once."""

from __future__ import annotations

import sqlalchemy as sa

from importer import batches, redrive
from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from tests.integration.factories import vendor_report
from worker.tasks import give_up_chunk, run_chunk


def accept(db, n=6, chunk_size=2):
    org, report = vendor_report(db, "redrive")
    return accept_records(db, org, report, [vendor(i) for i in range(n)], chunk_size=chunk_size)


def chunk(db, chunk_id):
    with db.session() as session:
        return session.get(ImportChunk, chunk_id)


def test_a_chunk_being_written_is_left_alone(pg):
    batch_id, (writing, abandoned, _) = accept(pg)
    with pg.session() as session:
        batches.claim_chunk(session, writing, "celery@alive")
    with pg.session() as session:
        batches.claim_chunk(session, abandoned, "celery@dead")
    writer = pg.new_session()  # a live worker in the middle of its write holds the row
    writer.execute(sa.select(ImportChunk).where(ImportChunk.id == writing).with_for_update())
    try:
        with pg.session() as session:
            outcome = redrive.redrive_batch(session, batch_id)
    finally:
        writer.rollback()
        writer.close()
    assert (outcome.busy_chunks, outcome.resent_chunks, outcome.failed_chunks) == (1, 1, 0)
    assert writing not in outcome.to_send and abandoned in outcome.to_send
    assert chunk(pg, writing).status == ChunkStatus.PROCESSING
    assert chunk(pg, abandoned).status == ChunkStatus.PENDING


def test_two_redrives_at_once_take_the_counts_back_once(pg):
    batch_id, (first, second, third) = accept(pg)
    notifier = PollingNotifier()
    run_chunk(recording_outbox(pg), notifier, first)
    give_up_chunk(recording_outbox(pg), notifier, second, "boom")
    run_chunk(recording_outbox(pg), notifier, third)
    # The first re-drive holds the failed chunk's row while the second one runs.
    holder = pg.new_session()
    held = redrive.redrive_batch(holder, batch_id)
    with pg.session() as session:
        other = redrive.redrive_batch(session, batch_id)
    holder.commit()
    holder.close()
    assert (held.failed_chunks, held.failed_records) == (1, 2)
    assert (other.failed_chunks, other.busy_chunks, other.changed) == (0, 1, False)
    with pg.session() as session:
        batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()
        assert (batch.status, batch.failed_count, batch.chunks_finished) == (
            BatchStatus.PROCESSING,
            0,
            2,
        )
    run_chunk(recording_outbox(pg), notifier, second)
    with pg.session() as session:
        batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()
        assert (batch.status, batch.created_count, batch.failed_count) == (
            BatchStatus.COMPLETED,
            6,
            0,
        )
