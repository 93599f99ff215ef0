"""Re-driving a batch: failed chunks back to pending with their counts taken back out,
unfinished chunks sent again, idempotently; a re-driven batch that ends again emits a
new webhook event."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import sqlalchemy as sa

from importer import batches, redrive, webhooks
from importer.db import utcnow
from importer.models import (
    BatchStatus,
    ChunkStatus,
    ImportBatch,
    ImportChunk,
    WebhookDelivery,
)
from importer.notify import PollingNotifier
from importer.outcomes import page
from tests.factories import accept_records, recording_outbox, vendor
from worker.tasks import give_up_chunk, run_chunk

COUNTS = ("status", "created_count", "updated_count", "failed_count", "processed_count")


def accept(db, org, report, records, chunk_size=2, deferred=False):
    return accept_records(db, org, report, records, chunk_size=chunk_size, deferred=deferred)


def load(db, batch_id):
    with db.session() as session:
        return session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()


def chunks_of(db, batch_id):
    with db.session() as session:
        return list(
            session.scalars(
                sa.select(ImportChunk)
                .where(ImportChunk.batch_id == batch_id)
                .order_by(ImportChunk.position)
            )
        )


def counts(batch):
    return {name: getattr(batch, name) for name in COUNTS} | {
        "error_count": batch.error_count,
        "chunks_finished": batch.chunks_finished,
    }


def snapshot(db, batch_id):
    """Everything a re-drive could change."""
    batch = load(db, batch_id)
    rows = [
        (c.status, c.errors, c.error_count, c.rejected_count, c.dispatched_at, c.finished_at)
        for c in chunks_of(db, batch_id)
    ]
    return counts(batch), batch.completed_at, rows


def redrive_batch(db, batch_id):
    with db.session() as session:
        return redrive.redrive_batch(session, batch_id)


def received_is_the_sum(batch) -> bool:
    return batch.received_count == batch.created_count + batch.updated_count + batch.failed_count


@pytest.fixture
def failed_batch(db, org_and_key, make_report):
    """Six records in chunks of two: record 5 invalid, the middle chunk gave up."""
    org, _ = org_and_key
    records = [vendor(i) for i in range(6)]
    records[5] = {"Supplier ID": "V-00005"}  # no name
    batch_id, (first, middle, last) = accept(db, org, make_report(), records)
    notifier = PollingNotifier()
    run_chunk(recording_outbox(db), notifier, first)
    with db.session() as session:
        batches.claim_chunk(session, middle, "celery@a")  # then its retries run out
    give_up_chunk(
        recording_outbox(db), notifier, middle, "OperationalError: server closed the connection"
    )
    run_chunk(recording_outbox(db), notifier, last)
    return batch_id, middle


def test_a_failed_chunk_goes_back_to_pending_with_its_counts_taken_back(db, failed_batch):
    batch_id, middle = failed_batch
    before = load(db, batch_id)
    assert counts(before) == {
        "status": BatchStatus.FAILED,
        "created_count": 3,
        "updated_count": 0,
        "failed_count": 3,  # record 5 at validation, records 2 and 3 write_failed
        "processed_count": 6,
        "error_count": 3,
        "chunks_finished": 3,
    }
    assert received_is_the_sum(before) and before.completed_at is not None

    outcome = redrive_batch(db, batch_id)

    assert (outcome.status_before, outcome.status_after) == ("failed", "processing")
    assert (outcome.failed_chunks, outcome.failed_records) == (1, 2)
    assert (outcome.resent_chunks, outcome.busy_chunks, outcome.to_send) == (0, 0, (middle,))
    assert outcome.changed
    assert "1 failed chunk(s) (2 records) put back to pending" in outcome.describe()
    after = load(db, batch_id)
    assert counts(after) == {
        "status": BatchStatus.PROCESSING,
        "created_count": 3,
        "updated_count": 0,
        "failed_count": 1,
        "processed_count": 4,
        "error_count": 1,
        "chunks_finished": 2,
    }
    assert after.completed_at is None
    chunk = next(c for c in chunks_of(db, batch_id) if c.id == middle)
    assert (chunk.status, chunk.errors, chunk.error_count, chunk.rejected_count) == (
        ChunkStatus.PENDING,
        None,
        0,
        0,
    )
    assert chunk.payload is not None and chunk.dispatched_at is None
    assert chunk.finished_at is None
    assert "server closed the connection" in chunk.last_error  # kept for the operator
    with db.session() as session:
        errors = page(session, batch_id, "errors", 0, 10)
    assert [(e["index"], e["error_code"]) for e in errors] == [(5, "missing_required_field")]


def test_a_redriven_failed_batch_completes_after_its_chunks_run(db, failed_batch):
    batch_id, middle = failed_batch
    outcome = redrive_batch(db, batch_id)
    for chunk_id in outcome.to_send:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)

    done = load(db, batch_id)
    assert counts(done) == {
        "status": BatchStatus.COMPLETED,
        "created_count": 5,
        "updated_count": 0,
        "failed_count": 1,
        "processed_count": 6,
        "error_count": 1,
        "chunks_finished": 3,
    }
    assert received_is_the_sum(done) and done.completed_at is not None
    with db.session() as session:
        results = page(session, batch_id, "results", 0, 10)
        errors = page(session, batch_id, "errors", 0, 10)
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [e["error_code"] for e in errors] == ["missing_required_field"]
    attempts = {c.id: c.attempts for c in chunks_of(db, batch_id)}
    assert attempts[middle] == 2  # claimed once before it gave up, once re-driven


def test_redriving_twice_changes_nothing_the_second_time(db, failed_batch):
    batch_id, middle = failed_batch
    redrive_batch(db, batch_id)
    first = snapshot(db, batch_id)

    again = redrive_batch(db, batch_id)

    assert not again.changed
    assert (again.failed_chunks, again.resent_chunks) == (0, 0)
    assert again.to_send == (middle,)  # still waiting for its hand-over
    assert snapshot(db, batch_id) == first

    run_chunk(recording_outbox(db), PollingNotifier(), middle)
    done = snapshot(db, batch_id)
    third = redrive_batch(db, batch_id)
    assert (third.changed, third.to_send, third.status_after) == (False, (), "completed")
    assert snapshot(db, batch_id) == done


def test_a_completed_batch_with_nothing_failed_is_a_no_op_that_says_so(
    db, org_and_key, make_report
):
    batch_id, pending = accept(db, org_and_key[0], make_report(), [vendor(i) for i in range(4)])
    for chunk_id in pending:
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    before = snapshot(db, batch_id)

    outcome = redrive_batch(db, batch_id)

    assert not outcome.changed and outcome.to_send == ()
    assert (outcome.status_before, outcome.status_after) == ("completed", "completed")
    assert outcome.describe() == (
        f"Batch {batch_id} is completed with nothing failed: nothing to re-drive."
    )
    assert snapshot(db, batch_id) == before


def test_an_unknown_batch_is_not_found(db):
    with pytest.raises(redrive.BatchNotFound), db.session() as session:
        redrive.redrive_batch(session, "cbbatch_" + "0" * 32)


def test_unfinished_chunks_nobody_writes_are_sent_again(db, org_and_key, make_report):
    batch_id, (first, second, third) = accept(
        db, org_and_key[0], make_report(), [vendor(i) for i in range(6)]
    )
    with db.session() as session:
        # first: handed over ten minutes ago, its message lost; second: handed over a
        # moment ago (its message is on its way); third: never handed over.
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id == first)
            .values(dispatched_at=utcnow() - dt.timedelta(minutes=10))
        )
        session.execute(
            sa.update(ImportChunk).where(ImportChunk.id == second).values(dispatched_at=utcnow())
        )

    outcome = redrive_batch(db, batch_id)

    assert (outcome.failed_chunks, outcome.resent_chunks, outcome.busy_chunks) == (0, 1, 0)
    assert outcome.to_send == (first, third)
    assert (outcome.status_before, outcome.status_after) == ("queued", "queued")
    assert "1 unfinished chunk(s) to be sent again" in outcome.describe()
    dispatched = [c.dispatched_at is not None for c in chunks_of(db, batch_id)]
    assert dispatched == [False, True, False]
    assert not redrive_batch(db, batch_id).changed
    for chunk_id in (first, second, third):
        run_chunk(recording_outbox(db), PollingNotifier(), chunk_id)
    done = load(db, batch_id)
    assert (done.status, done.created_count, done.processed_count) == (BatchStatus.COMPLETED, 6, 6)


def test_a_processing_chunk_is_left_to_the_sweep_without_row_locks(db, org_and_key, make_report):
    """SQLite cannot tell a chunk being written from an abandoned one (the PostgreSQL
    case is in tests/integration/test_redrive_postgres.py)."""
    batch_id, (first, _) = accept(db, org_and_key[0], make_report(), [vendor(i) for i in range(4)])
    with db.session() as session:
        batches.claim_chunk(session, first, "celery@a")
    outcome = redrive_batch(db, batch_id)
    assert (outcome.busy_chunks, outcome.resent_chunks, outcome.changed) == (1, 0, False)
    assert chunks_of(db, batch_id)[0].status == ChunkStatus.PROCESSING


def test_a_deferred_chunk_with_duplicates_counts_right_once_redriven(db, org_and_key, make_report):
    records = [vendor(0), vendor(1), vendor(0), vendor(3)]  # index 2 repeats index 0's id
    batch_id, (first, second) = accept(db, org_and_key[0], make_report(), records, deferred=True)
    notifier = PollingNotifier()
    give_up_chunk(recording_outbox(db), notifier, first, "boom")
    give_up_chunk(recording_outbox(db), notifier, second, "boom")
    failed = load(db, batch_id)
    assert (failed.status, failed.failed_count, failed.processed_count) == (
        BatchStatus.FAILED,
        4,
        4,
    )

    outcome = redrive_batch(db, batch_id)
    assert (outcome.failed_chunks, outcome.failed_records, outcome.status_after) == (
        2,
        2,  # indexes 1 and 3; 0 and 2 failed at acceptance as duplicates
        "queued",  # no chunk of it ever started
    )
    assert load(db, batch_id).failed_count == 2
    for chunk_id in outcome.to_send:
        run_chunk(recording_outbox(db), notifier, chunk_id)

    done = load(db, batch_id)
    assert (done.status, done.created_count, done.failed_count, done.processed_count) == (
        BatchStatus.COMPLETED,
        2,
        2,
        4,
    )
    assert received_is_the_sum(done)
    with db.session() as session:
        codes = [e["error_code"] for e in page(session, batch_id, "errors", 0, 10)]
    assert codes == ["duplicate_external_id", "duplicate_external_id"]


def deliveries(db, batch_id):
    with db.session() as session:
        return list(
            session.scalars(
                sa.select(WebhookDelivery)
                .where(WebhookDelivery.batch_id == batch_id)
                .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            )
        )


def test_a_redriven_batch_that_ends_again_records_a_new_event(db, org_and_key, make_report):
    org, _ = org_and_key
    with db.session() as session:
        webhooks.create_endpoint(
            session,
            org.id,
            url="https://hooks.example.com/importer",
            events=list(webhooks.EVENT_TYPES),
            secret="whsec-0123456789abcdef",
        )
    batch_id, (first, second) = accept(db, org, make_report(), [vendor(i) for i in range(4)])
    notifier = PollingNotifier()
    run_chunk(recording_outbox(db), notifier, first)
    give_up_chunk(recording_outbox(db), notifier, second, "boom")
    (failed_event,) = deliveries(db, batch_id)
    assert failed_event.event_type == webhooks.IMPORT_FAILED

    # Re-driven, it fails again: a second Import.Failed, a new event.
    outcome = redrive_batch(db, batch_id)
    assert len(deliveries(db, batch_id)) == 1  # re-driving records no event by itself
    give_up_chunk(recording_outbox(db), notifier, outcome.to_send[0], "boom again")
    assert [d.event_type for d in deliveries(db, batch_id)] == [webhooks.IMPORT_FAILED] * 2

    # Re-driven once more, it completes: Import.Completed with the final counts.
    outcome = redrive_batch(db, batch_id)
    run_chunk(recording_outbox(db), notifier, outcome.to_send[0])
    found = deliveries(db, batch_id)
    assert [d.event_type for d in found] == [
        webhooks.IMPORT_FAILED,
        webhooks.IMPORT_FAILED,
        webhooks.IMPORT_COMPLETED,
    ]
    assert len({d.event_id for d in found}) == 3
    body = orjson.loads(found[-1].body)
    assert body["data"]["status"] == "completed"
    assert (body["data"]["created_count"], body["data"]["failed_count"]) == (4, 0)
    assert body["event_id"] == found[-1].event_id
    assert body["occurred_at"] >= orjson.loads(found[0].body)["occurred_at"]


def test_redrive_hands_the_chunks_over_or_leaves_them_to_the_relay(db, settings, failed_batch):
    batch_id, middle = failed_batch
    outbox = recording_outbox(db, settings)
    outbox.broker.down = True

    unsent = outbox.redrive(batch_id)
    assert unsent.sent == 0 and "Connection refused" in (unsent.send_error or "")
    assert "the relay will send the 1 chunk(s)" in unsent.describe()
    assert chunks_of(db, batch_id)[1].dispatched_at is None

    outbox.broker.down = False
    assert outbox.maintain().released == 1  # the workers' timer, once the broker is back
    assert outbox.broker.chunk_ids == [middle]

    # Already handed over: another pass sends nothing twice.
    assert outbox.maintain().released == 0
    assert outbox.broker.chunk_ids == [middle]


def test_redrive_sends_at_once_when_the_broker_answers(db, settings, failed_batch):
    batch_id, middle = failed_batch
    outbox = recording_outbox(db, settings)
    done = outbox.redrive(batch_id)
    sent = outbox.broker.chunk_ids
    assert (done.sent, done.send_error, sent) == (1, None, [middle])
    assert done.describe().endswith("Sent 1 chunk(s) to the broker.")
    assert chunks_of(db, batch_id)[1].dispatched_at is not None
    data = done.as_dict()
    assert (data["failed_chunks"], data["to_send"], data["changed"]) == (1, [middle], True)
