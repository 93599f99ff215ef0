"""The lanes and the bulk lane's scheduler, with the task functions run as a worker
would run what the broker hands it: the claim order is read back from the database."""

from __future__ import annotations

import random

import sqlalchemy as sa

from importer import scheduler
from importer.models import ChunkStatus, ImportChunk, Lane
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from worker.tasks import run_chunk


def flood(db, org, report, chunks, chunk_size=2):
    records = [vendor(n) for n in range(chunks * chunk_size)]
    return accept_records(db, org, report, records, chunk_size=chunk_size)


def claim_order(db):
    """(org, lane) of every chunk in the order workers started them."""
    with db.session() as session:
        return [
            (org_id, Lane(lane))
            for org_id, lane in session.execute(
                sa.select(ImportChunk.org_id, ImportChunk.lane)
                .where(ImportChunk.started_at.is_not(None))
                .order_by(ImportChunk.started_at, ImportChunk.id)
            )
        ]


class Worker:
    """One worker process: takes the messages sent, first in first out, and runs each
    to its commit (which releases the bulk lane's next chunk)."""

    def __init__(self, outbox):
        self.outbox = outbox

    def step(self) -> bool:
        queued = self.outbox.broker.messages  # what was sent and not taken yet
        if not queued:
            return False
        message = queued.pop(0)
        run_chunk(self.outbox, PollingNotifier(), message.chunk_id)
        return True

    def drain(self) -> None:
        while self.step():
            pass


def accept_batch_for(db, org, report):
    """A one-record batch accepted as the web accepts a synchronous one."""
    from importer.batches import accept_batch
    from importer.validation import validate_records

    outcome = validate_records([vendor(1)], base_object="vendor", mapping=report.mapping)
    with db.session() as session:
        return accept_batch(
            session,
            org=session.merge(org),
            report=session.merge(report),
            received_count=1,
            outcome=outcome,
            chunk_size=5000,
            lane=Lane.INTERACTIVE,
            handed_over=True,
        )


def test_a_small_batch_is_sent_at_once_while_another_orgs_flood_waits(
    db, settings, make_org, make_report
):
    """What the broker holds when a small batch comes during a flood: the few bulk
    chunks the workers' bulk processes are on, and the small batch; the rest of the
    flood waits in the database. (On real workers: tests/integration/test_lanes.py.)"""
    flooding, _ = make_org("Flooding")
    waiting, _ = make_org("Waiting")
    outbox = recording_outbox(db, settings)
    flood(db, flooding, make_report(org=flooding), chunks=50)
    outbox.release()
    Worker(outbox).step()  # one bulk chunk done: the next one released
    outbox.after_accept(accept_batch_for(db, waiting, make_report(org=waiting)))

    sent = [(m.org_id, m.lane) for m in outbox.broker.messages]
    assert sent == [(flooding.id, Lane.BULK)] * settings.worker_concurrency + [
        (waiting.id, Lane.INTERACTIVE)
    ]
    with db.session() as session:
        assert scheduler.backlog(session).chunks == 50 - 1 - settings.worker_concurrency


def test_two_floods_alternate_claims_between_the_orgs(db, settings, make_org, make_report):
    first, _ = make_org("First")
    second, _ = make_org("Second")
    outbox = recording_outbox(db, settings)
    flood(db, first, make_report(org=first), chunks=10)
    outbox.release()
    flood(db, second, make_report(org=second), chunks=6)
    outbox.release()
    Worker(outbox).drain()

    names = {first.id: "1", second.id: "2"}
    order = "".join(names[org_id] for org_id, _ in claim_order(db))
    # The first org had both slots when the second came; from then on the slots
    # alternate until the second runs out.
    assert order == "11" + "21" * 6 + "11"


def test_an_org_arriving_during_a_flood_runs_within_one_chunk(db, settings, make_org, make_report):
    busy, _ = make_org("Busy")
    late, _ = make_org("Late")
    outbox = recording_outbox(db, settings)
    flood(db, busy, make_report(org=busy), chunks=20)
    outbox.release()
    worker = Worker(outbox)
    for _ in range(5):
        worker.step()
    flood(db, late, make_report(org=late), chunks=3)
    outbox.release()  # nothing: every slot is busy
    worker.drain()
    order = [org_id for org_id, _ in claim_order(db)]
    # Five of Busy's chunks ran and two more were in flight when Late came: Late's
    # first chunk is the next one released.
    assert order.index(late.id) == 5 + settings.worker_concurrency


def test_within_an_org_batches_run_in_accept_order(db, settings, org_and_key, make_report):
    org = org_and_key[0]
    report = make_report()
    batch_ids = [flood(db, org, report, chunks=3)[0] for _ in range(3)]
    outbox = recording_outbox(db, settings)
    outbox.release()
    Worker(outbox).drain()
    with db.session() as session:
        started = list(
            session.execute(
                sa.select(ImportChunk.batch_id, ImportChunk.position).order_by(
                    ImportChunk.started_at, ImportChunk.id
                )
            )
        )
    assert started == [(batch_id, position) for batch_id in batch_ids for position in range(3)]


def in_flight(db):
    with db.session() as session:
        return scheduler.in_flight_by_org(session)


def test_the_caps_hold_through_any_interleaving(db, settings, make_org, make_report):
    """Accepts, releases and finished chunks in a random order: after every step, no
    org has more than its cap in flight and the lane no more than its slots."""
    settings = settings.replace(worker_concurrency=3, org_max_in_flight=2)
    outbox = recording_outbox(db, settings)
    orgs = [make_org(f"org {n}")[0] for n in range(4)]
    reports = {org.id: make_report(org=org) for org in orgs}
    rng = random.Random(20261202)
    worker = Worker(outbox)
    for _ in range(60):
        action = rng.choice(["accept", "release", "run", "run"])
        if action == "accept":
            org = rng.choice(orgs)
            flood(db, org, reports[org.id], chunks=rng.randint(1, 4))
        elif action == "release":
            outbox.release()
        else:
            worker.step()
        flying = in_flight(db)
        assert all(count <= 2 for count in flying.values()), flying
        assert sum(flying.values()) <= 3, flying
    outbox.release()
    worker.drain()
    with db.session() as session:
        left = session.scalar(
            sa.select(sa.func.count()).where(ImportChunk.status != ChunkStatus.DONE)
        )
    assert left == 0


def test_the_live_workers_bulk_slots_size_the_lane(db, settings, org_and_key, make_report):
    from importer import monitoring
    from importer.db import utcnow

    with db.session() as session:
        for node in ("celery@a", "celery@b"):
            monitoring.beat(
                session,
                node=node,
                pid=1,
                concurrency=4,
                bulk_slots=3,
                queues=["interactive", "bulk"],
                started_at=utcnow(),
            )
        monitoring.beat(
            session,
            node="celery@gone",
            pid=1,
            concurrency=4,
            bulk_slots=3,
            queues=["bulk"],
            started_at=utcnow(),
            stopped=True,
        )
    flood(db, org_and_key[0], make_report(), chunks=10)
    outbox = recording_outbox(db, settings)
    assert len(outbox.release()) == 6  # 3 + 3: the stopped worker counts for nothing
    assert outbox.release() == []


def test_an_interactive_batch_is_sent_at_once_whatever_the_backlog(
    client, auth, make_report, worker, db
):
    make_report()
    worker.hold = True
    for _ in range(3):
        post = client.post(
            "/v1/import/vendors",
            json={"data": [vendor(n) for n in range(10)]},
            headers={**auth, "Prefer": "respond-async"},
        )
        assert post.status_code == 202
    assert [m.lane for m in worker.messages] == [Lane.BULK, Lane.BULK]  # two bulk slots
    worker.hold = False
    response = client.post("/v1/import/vendors", json={"data": [vendor(99)]}, headers=auth)
    assert response.status_code == 200
    assert worker.messages[2].lane == Lane.INTERACTIVE
    assert response.json["created_count"] == 1
