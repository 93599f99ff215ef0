"""The batch lifecycle: accept, claim, write, fail; counted exactly once."""

from __future__ import annotations

import sqlalchemy as sa

from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk
from importer.notify import PollingNotifier
from importer.outcomes import page
from tests.factories import accept_records, recording_outbox
from worker.tasks import give_up_chunk, run_chunk


def accept(db, org, report, records, chunk_size=2, **options):
    return accept_records(db, org, report, records, chunk_size=chunk_size, **options)


def load(db, batch_id):
    with db.session() as session:
        return session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()


def records(n, bad=()):
    return [
        {"Supplier ID": f"V{i}"} if i in bad else {"Supplier ID": f"V{i}", "Supplier Name": "n"}
        for i in range(n)
    ]


def test_accept_splits_into_chunks_and_finishes_the_empty_ones(db, org_and_key, make_report):
    org, _ = org_and_key
    report = make_report()
    batch_id, pending = accept(db, org, report, records(6, bad={2, 3}), chunk_size=2)
    batch = load(db, batch_id)
    assert (batch.chunk_count, batch.chunks_finished, len(pending)) == (3, 1, 2)
    assert (batch.status, batch.failed_count, batch.processed_count) == (BatchStatus.QUEUED, 2, 2)


def test_running_a_chunk_twice_counts_it_once(db, org_and_key, make_report):
    org, _ = org_and_key
    report = make_report()
    batch_id, pending = accept(db, org, report, records(4), chunk_size=2)
    notifier = PollingNotifier()
    for chunk_id in pending + pending:  # every task delivered twice
        run_chunk(recording_outbox(db), notifier, chunk_id)
    batch = load(db, batch_id)
    assert (batch.status, batch.created_count, batch.updated_count) == (BatchStatus.COMPLETED, 4, 0)
    assert batch.processed_count == batch.received_count == 4
    with db.session() as session:
        attempts = session.scalars(
            sa.select(ImportChunk.attempts).where(ImportChunk.batch_id == batch_id)
        )
        assert list(attempts) == [1, 1]


def test_a_chunk_that_gives_up_fails_its_records_and_the_batch(db, org_and_key, make_report):
    org, _ = org_and_key
    report = make_report()
    batch_id, (first, second) = accept(db, org, report, records(4, bad={3}), chunk_size=2)
    notifier = PollingNotifier()
    run_chunk(recording_outbox(db), notifier, first)
    give_up_chunk(
        recording_outbox(db), notifier, second, "OperationalError: server closed the connection"
    )
    batch = load(db, batch_id)
    assert batch.status == BatchStatus.FAILED
    assert (batch.created_count, batch.failed_count) == (2, 2)
    assert batch.received_count == batch.created_count + batch.updated_count + batch.failed_count
    with db.session() as session:
        errors = page(session, batch_id, "errors", 0, 10)
        chunk = session.get(ImportChunk, second)
        assert chunk.status == ChunkStatus.FAILED and chunk.payload is not None
    assert [(e["index"], e["error_code"]) for e in errors] == [
        (2, "write_failed"),
        (3, "missing_required_field"),
    ]


def test_outcome_pages_cross_chunk_boundaries(db, org_and_key, make_report):
    org, _ = org_and_key
    report = make_report()
    batch_id, pending = accept(db, org, report, records(9, bad={0, 4}), chunk_size=3)
    for chunk_id in pending:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    with db.session() as session:
        everything = page(session, batch_id, "results", 0, 100)
        pieces = [page(session, batch_id, "results", offset, 2) for offset in range(0, 8, 2)]
        assert [r["index"] for r in everything] == [1, 2, 3, 5, 6, 7, 8]
        assert [r for piece in pieces for r in piece] == everything
        assert page(session, batch_id, "results", 7, 5) == []
        assert [r["external_id"] for r in everything] == [f"V{n}" for n in (1, 2, 3, 5, 6, 7, 8)]


def test_results_are_stored_in_21_bytes_a_record_and_read_back_whole(db, org_and_key, make_report):
    """A written record's result keeps its index, action and object id (the external_id
    is the object's own); a dry run's, whose records may have no object, keeps all."""
    org, _ = org_and_key
    report = make_report()
    first, chunks = accept(db, org, report, records(500), chunk_size=500)
    run_chunk(recording_outbox(db), PollingNotifier(), chunks[0])
    second, chunks = accept(db, org, report, records(600), chunk_size=600)
    run_chunk(recording_outbox(db), PollingNotifier(), chunks[0])
    dry, chunks = accept(db, org, report, records(601)[599:], chunk_size=600, dry_run=True)
    run_chunk(recording_outbox(db), PollingNotifier(), chunks[0])
    with db.session() as session:
        (blob,) = session.scalars(
            sa.select(ImportChunk.results).where(ImportChunk.batch_id == second)
        )
        assert len(blob) <= 21 * 600 + 16
        results = page(session, second, "results", 0, 1000)
        assert [(r["index"], r["external_id"], r["action"]) for r in results] == [
            (n, f"V{n}", "updated" if n < 500 else "created") for n in range(600)
        ]
        # The same 500 records again: updates that changed nothing.
        assert results[:500] == [
            {**r, "action": "updated", "changed": False}
            for r in page(session, first, "results", 0, 1000)
        ]
        assert [r["changed"] for r in results[500:]] == [True] * 100
        would = page(session, dry, "results", 0, 10)
    assert [(r["external_id"], r["action"]) for r in would] == [
        ("V599", "updated"),
        ("V600", "created"),
    ]
    assert would[0]["coverbase_id"] == results[599]["coverbase_id"]
    assert would[1]["coverbase_id"] is None
