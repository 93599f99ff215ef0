"""Faults injected for real: processes killed, the broker and the database stopped,
batches racing, tasks delivered twice. Each test says what it injected and what it
counted (printed in the run's summary under "faults injected and what was counted")."""

from __future__ import annotations

import signal
import subprocess
import threading

import orjson
import psycopg
import pytest
import redis

from tests.factories import VENDOR_MAPPING, vendor
from tests.integration.factories import (
    FAST_RECOVERY,
    new_org,
    sessions_waiting_on_a_lock,
    wait_until,
)
from tests.integration.private_services import PrivatePostgres
from tests.integration.stack import Stack

pytestmark = pytest.mark.fault


def stored_vendors(stack: Stack, org_id: str, prefix: str = "") -> dict[str, list[str]]:
    """external_id -> the names stored for it, straight from the database (a duplicate
    object would show as two names)."""
    found: dict[str, list[str]] = {}
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        for external_id, name in conn.execute(
            "SELECT external_id, name FROM vendors WHERE org_id = %s AND external_id LIKE %s",
            (org_id, prefix + "%"),
        ):
            found.setdefault(external_id, []).append(name)
    return found


def test_kill_9_of_a_worker_in_the_middle_of_a_50000_record_batch(fault_stack, fault_log):
    fault_stack.env["IMPORTER_CHUNK_SIZE"] = "500"
    first_worker = fault_stack.start_worker(concurrency=2)
    fault_stack.start_web()
    api = new_org(fault_stack)
    slug = api.create_report("vendor", VENDOR_MAPPING)
    response = api.post(f"/v1/import/{slug}", json={"data": [vendor(n) for n in range(50_000)]})
    assert response.status_code == 202
    batch_id = response.json()["batch_id"]

    def progress() -> dict:
        return api.get(f"/v1/import/batches/{batch_id}").json()["progress"]

    wait_until(
        lambda: progress()["processed"] >= 5_000,
        timeout=120,
        what="some chunks written",
        every=0.05,
    )
    first_worker.kill(signal.SIGKILL)  # the worker's main process and its pool children
    at_kill = progress()
    assert at_kill["processed"] < at_kill["total"], "the batch finished before the fault"
    fault_stack.start_worker(concurrency=2)

    done = api.wait_done(batch_id, timeout=240)
    assert done["status"] == "completed"
    assert (done["created_count"], done["updated_count"], done["failed_count"]) == (50_000, 0, 0)
    assert done["progress"] == {"processed": 50_000, "total": 50_000}
    stored = stored_vendors(fault_stack, api.org_id)
    rows, distinct = sum(len(names) for names in stored.values()), len(stored)
    assert rows == distinct == 50_000
    results = api.get(
        f"/v1/import/batches/{batch_id}/results", headers={"Accept": "application/x-ndjson"}
    )
    indexes = [orjson.loads(line)["index"] for line in results.content.splitlines()]
    assert indexes == list(range(50_000))
    fault_log(
        f"kill -9 of the worker at {at_kill['processed']}/50000 records processed; a new worker "
        f"finished the batch: created={done['created_count']} updated={done['updated_count']} "
        f"failed={done['failed_count']}, {rows} rows for {distinct} external_ids"
    )


def test_redis_stopped_after_a_202_loses_nothing(fault_stack, private_redis, fault_log):
    fault_stack.start_web()  # no worker yet: the work waits in the broker
    api = new_org(fault_stack)
    slug = api.create_report("vendor", VENDOR_MAPPING)
    records = [vendor(n) for n in range(5_000)]
    response = api.post(
        f"/v1/import/{slug}", json={"data": records}, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    batch_id = response.json()["batch_id"]
    broker = redis.Redis.from_url(private_redis.url)
    queued_before = broker.llen("bulk")
    assert queued_before == 1  # the web handed the chunk over

    private_redis.kill()  # Redis dies with the queued work (no persistence)
    wait_until(lambda: api.get("/readyz").status_code == 503, what="/readyz to see the broker down")
    refused = api.post(f"/v1/import/{slug}", json={"data": [vendor(99_999)]})
    assert refused.status_code == 503
    assert refused.json()["detail"]["code"] == "unavailable"

    private_redis.start()  # back, empty
    queued_after_restart = redis.Redis.from_url(private_redis.url).llen("bulk")
    assert queued_after_restart == 0
    fault_stack.start_worker()
    done = api.wait_done(batch_id, timeout=120)
    assert (done["status"], done["created_count"], done["failed_count"]) == ("completed", 5_000, 0)
    batches = api.get("/v1/import/batches").json()
    assert batches["total"] == 1  # the request refused during the outage left nothing
    stored = stored_vendors(fault_stack, api.org_id)
    rows = sum(len(names) for names in stored.values())
    assert rows == len(stored) == 5_000
    fault_log(
        f"Redis killed after a 202 with {queued_before} chunk message queued; after restart the "
        f"queue held {queued_after_restart}; an import during the outage got 503; the relay "
        f"re-sent the work and the batch completed: created={done['created_count']}, {rows} rows"
    )


@pytest.fixture
def private_postgres(backing_services: None):
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        server.remove()
        pytest.fail(f"could not run a private PostgreSQL for the outage test: {error}")
    yield server
    server.remove()


def test_postgresql_stopped_answers_503_and_recovers_by_itself(
    private_postgres, private_redis, fault_log
):
    stack = Stack(private_postgres.url, private_redis.url, **FAST_RECOVERY)
    try:
        stack.run("db", "upgrade")
        stack.start_worker()
        stack.start_web()
        api = new_org(stack)
        slug = api.create_report("vendor", VENDOR_MAPPING)
        assert api.post(f"/v1/import/{slug}", json={"data": [vendor(1)]}).status_code == 200

        private_postgres.stop()
        refused = api.post(f"/v1/import/{slug}", json={"data": [vendor(2)]})
        assert refused.status_code == 503
        assert refused.json()["detail"]["code"] == "unavailable"
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unavailable")

        private_postgres.start()  # no restart of the web or worker processes
        wait_until(lambda: api.get("/readyz").status_code == 200, what="/readyz to recover")
        after = api.post(f"/v1/import/{slug}", json={"data": [vendor(3)]})
        assert after.status_code == 200
        assert after.json()["created_count"] == 1
        batches = api.get("/v1/import/batches").json()["total"]
        vendors = sorted(v["external_id"] for v in api.get("/v1/vendors").json()["items"])
        assert (batches, vendors) == (2, ["V-00001", "V-00003"])
        fault_log(
            f"PostgreSQL stopped (fast shutdown): import answered {refused.status_code}, /readyz "
            f"{ready.status_code}; restarted: import answered {after.status_code} with no process "
            f"restarted; batches={batches}, vendors={vendors} (nothing of the refused request)"
        )
    finally:
        stack.stop()


def post_at_once(api, slug: str, bodies: dict[str, dict]) -> dict[str, dict]:
    """Post each body from its own thread, released together; the answers by key."""
    answers: dict[str, dict] = {}
    barrier = threading.Barrier(len(bodies))

    def post(side: str) -> None:
        barrier.wait()
        answers[side] = api.post(f"/v1/import/{slug}", json=bodies[side]).json()

    threads = [threading.Thread(target=post, args=(side,)) for side in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_racing_batches_on_the_same_external_ids_later_wins(stack, api, fault_log):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    duplicates = mismatches = later_written_first = 0
    for round_ in range(20):
        ids = [f"R{round_}-{n}" for n in range(40)]
        bodies = {
            side: {"data": [{"Supplier ID": i, "Supplier Name": f"{side}-{round_}"} for i in ids]}
            for side in ("A", "B")
        }
        answers = post_at_once(api, slug, bodies)
        assert all(answer["status"] == "completed" for answer in answers.values())
        # Acceptance order as the API reports it: the batch list is newest first.
        newest = api.get("/v1/import/batches?limit=1").json()["items"][0]["batch_id"]
        later = next(side for side, answer in answers.items() if answer["batch_id"] == newest)
        # Each object was created exactly once, by one of the two batches.
        assert sum(answer["created_count"] for answer in answers.values()) == 40
        assert all(a["created_count"] + a["updated_count"] == 40 for a in answers.values())
        later_written_first += answers[later]["created_count"] > 0
        stored = stored_vendors(stack, api.org_id, prefix=f"R{round_}-")
        assert sorted(stored) == sorted(ids)
        duplicates += sum(len(names) - 1 for names in stored.values())
        mismatches += sum(1 for names in stored.values() if names != [f"{later}-{round_}"])
    total = api.get("/v1/vendors?limit=1").json()["total"]
    assert (total, duplicates, mismatches) == (800, 0, 0)
    fault_log(
        f"20 rounds of two batches posted at once over the same 40 external_ids (the workers "
        f"wrote the later-accepted one first in {later_written_first} rounds): {total} vendors, "
        f"{duplicates} duplicates, {mismatches} values not from the later-accepted batch"
    )


def test_the_same_chunk_delivered_twice_changes_nothing(stack, api, fault_log):
    from importer.broker import CeleryBroker, ChunkMessage
    from importer.config import Settings
    from importer.models import Lane

    slug = api.create_report("vendor", VENDOR_MAPPING)
    response = api.post(
        f"/v1/import/{slug}",
        json={"data": [vendor(n) for n in range(3_000)]},
        headers={"Prefer": "respond-async"},
    )
    batch_id = response.json()["batch_id"]
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        chunk_ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM import_chunks WHERE batch_id = %s ORDER BY position", (batch_id,)
            )
        ]
    # Injected: every chunk message published again while the first copies are in flight...
    broker = CeleryBroker(Settings.from_env(stack.env))

    def send(chunk_ids: list[int]) -> None:
        broker.send_chunks([ChunkMessage(i, batch_id, api.org_id, Lane.BULK) for i in chunk_ids])

    send(chunk_ids)
    before = api.wait_done(batch_id)
    # ...and once more after the batch is done (a late redelivery).
    send(chunk_ids)
    wait_until(
        lambda: redis.Redis.from_url(stack.env["REDIS_URL"]).llen("bulk") == 0,
        what="the duplicates to be consumed",
        every=0.05,
    )
    after = api.get(f"/v1/import/batches/{batch_id}").json()
    assert (after["created_count"], after["updated_count"], after["failed_count"]) == (3_000, 0, 0)
    assert after == before
    assert api.get("/v1/vendors?limit=1").json()["total"] == 3_000
    fault_log(
        f"{len(chunk_ids)} chunk message(s) published twice more (in flight and after completion): "
        f"created={after['created_count']} updated={after['updated_count']}, "
        f"3000 vendors, the batch body unchanged"
    )


def test_kill_9_of_a_worker_holding_an_orgs_bulk_chunks_leaves_nothing_stuck(
    fault_stack, fault_log
):
    """The scheduler in the path: the killed worker held the flooding org's in-flight
    chunks (its slots in the bulk lane). The sweep and the relay give them back, both
    orgs' batches complete, and the lane ends empty."""
    fault_stack.env["IMPORTER_CHUNK_SIZE"] = "2000"
    first_worker = fault_stack.start_worker(concurrency=2)
    fault_stack.start_web()
    flooding, other = new_org(fault_stack), new_org(fault_stack)
    slugs = {api.org_id: api.create_report("vendor", VENDOR_MAPPING) for api in (flooding, other)}
    sizes = {flooding.org_id: 40_000, other.org_id: 10_000}
    batch_ids = {}
    for api in (flooding, other):
        records = [vendor(n) for n in range(sizes[api.org_id])]
        response = api.post(f"/v1/import/{slugs[api.org_id]}", json={"data": records})
        assert response.status_code == 202
        batch_ids[api.org_id] = response.json()["batch_id"]

    def being_written(org_id: str) -> int:
        with psycopg.connect(fault_stack.env["DATABASE_URL"]) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM import_chunks WHERE org_id = %s AND lane = 'bulk' "
                "AND status = 'processing'",
                (org_id,),
            ).fetchone()
        return int(count)

    def processed(api) -> int:
        body = api.get(f"/v1/import/batches/{batch_ids[api.org_id]}").json()
        return int(body["progress"]["processed"])

    wait_until(
        lambda: processed(flooding) >= 4_000,
        timeout=120,
        what="the flooding org's first chunks written",
        every=0.02,
    )
    # The next writes into vendors wait (a SHARE lock lets their reads through, not their
    # rows), so the worker is surely in the middle of a chunk when it is killed.
    with psycopg.connect(fault_stack.env["DATABASE_URL"]) as blocker:
        blocker.execute("LOCK TABLE vendors IN SHARE MODE")
        wait_until(
            lambda: (
                being_written(flooding.org_id) > 0
                and sessions_waiting_on_a_lock(fault_stack.env["DATABASE_URL"]) > 0
            ),
            timeout=120,
            what="a flooding org's chunk waiting to write",
            every=0.02,
        )
        first_worker.kill(signal.SIGKILL)
        held = being_written(flooding.org_id)  # left "processing" by the dead worker
        blocker.rollback()
    assert held >= 1
    fault_stack.start_worker(concurrency=2)

    done = {
        org_id: api.wait_done(batch_ids[org_id], timeout=240)
        for org_id, api in (
            (flooding.org_id, flooding),
            (other.org_id, other),
        )
    }
    for org_id, body in done.items():
        assert body["status"] == "completed"
        assert (body["created_count"], body["failed_count"]) == (sizes[org_id], 0)
        stored = stored_vendors(fault_stack, org_id)
        assert sum(len(names) for names in stored.values()) == len(stored) == sizes[org_id]
    status = orjson.loads(fault_stack.run("status", "--json"))
    backlog = status["backlog"]
    assert (backlog["chunks"], backlog["in_flight"], backlog["orgs"]) == (0, 0, 0)
    with psycopg.connect(fault_stack.env["DATABASE_URL"]) as conn:
        (unfinished,) = conn.execute(
            "SELECT count(*) FROM import_chunks WHERE status IN ('pending', 'processing')"
        ).fetchone()
    assert unfinished == 0
    small = other.post(f"/v1/import/{slugs[other.org_id]}", json={"data": [vendor(99_999)]})
    assert small.status_code == 200
    fault_log(
        f"kill -9 of the worker while it wrote {held} of the flooding org's bulk chunk(s); "
        f"a new worker finished both orgs' batches: created="
        f"{done[flooding.org_id]['created_count']} and {done[other.org_id]['created_count']}, "
        f"0 duplicates; afterwards 0 chunks waiting, 0 in flight, 0 unfinished; "
        f"a small batch answered {small.status_code}"
    )
