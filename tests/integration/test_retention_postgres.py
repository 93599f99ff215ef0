"""The retention purge on PostgreSQL: its transactions never hold up an import, and
two purges at once never wait for each other."""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from importer import retention
from importer.config import Settings
from importer.db import utcnow
from importer.models import ImportBatch, ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from tests.integration.factories import vendor_report
from worker.tasks import run_chunk


def imported(db, org, report, keys, age_days=0.0):
    """A finished batch of ``keys``, finished ``age_days`` ago."""
    batch_id, chunk_ids = accept_records(db, org, report, [vendor(k) for k in keys], chunk_size=2)
    for chunk_id in chunk_ids:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    if age_days:
        with db.session() as session:
            session.execute(
                sa.update(ImportBatch)
                .where(ImportBatch.id == batch_id)
                .values(completed_at=utcnow() - dt.timedelta(days=age_days))
            )
    return batch_id


def test_an_open_purge_transaction_holds_up_neither_imports_nor_another_purge(fresh_pg):
    db = fresh_pg
    settings = Settings.from_env({"DATABASE_URL": db.url})
    org, report = vendor_report(db, "retention")
    old = [imported(db, org, report, range(n * 4, n * 4 + 4), age_days=40) for n in range(3)]
    cutoffs = retention.Cutoffs.of(settings, utcnow())

    # One purge step, its transaction left open: it holds the locks of what it purges.
    holder = db.new_session()
    batches, chunks = retention.purge_details_step(holder, cutoffs)
    assert (batches, chunks) == (3, 6)

    # Meanwhile an import of the same org (new and existing objects) goes through ...
    finished = []
    writer = threading.Thread(
        target=lambda: finished.append(imported(db, org, report, range(2, 8)))
    )
    writer.start()
    writer.join(30)
    assert not writer.is_alive() and len(finished) == 1
    # ... and another purge skips what the first holds instead of waiting for it.
    others: list[retention.Purged] = []
    purger = threading.Thread(target=lambda: others.append(retention.purge(db, settings)))
    purger.start()
    purger.join(30)
    assert not purger.is_alive()
    (other,) = others
    assert other.complete and other.batches_details == 0

    holder.commit()
    holder.close()
    with db.session() as session:
        kept = dict(session.execute(sa.select(ImportBatch.id, ImportBatch.details_purged_at)).all())
        chunk_batches = set(session.scalars(sa.select(ImportChunk.batch_id).distinct()))
    assert all(kept[batch_id] is not None for batch_id in old)
    assert kept[finished[0]] is None and chunk_batches == {finished[0]}


def test_purged_summaries_take_their_chunks_with_them(fresh_pg):
    """Details kept longer than summaries (an operator's choice): the batch and its
    chunks go together."""
    db = fresh_pg
    settings = Settings.from_env(
        {
            "DATABASE_URL": db.url,
            "IMPORTER_BATCH_DETAIL_RETENTION_DAYS": "400",
            "IMPORTER_BATCH_RETENTION_DAYS": "365",
        }
    )
    org, report = vendor_report(db, "retention")
    gone = imported(db, org, report, range(4), age_days=370)
    kept = imported(db, org, report, range(4, 8), age_days=100)
    purged = retention.purge(db, settings)
    assert (purged.import_batches, purged.import_chunks, purged.batches_details) == (1, 2, 0)
    with db.session() as session:
        assert set(session.scalars(sa.select(ImportBatch.id))) == {kept}
        assert set(session.scalars(sa.select(ImportChunk.batch_id).distinct())) == {kept}
    assert gone != kept
