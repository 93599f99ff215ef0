"""The two lanes on the real thing: gunicorn, a Celery worker on Redis, PostgreSQL.
Claim order is read back from the database, never inferred from timings."""

from __future__ import annotations

import threading

import psycopg

from tests.factories import VENDOR_MAPPING, vendor
from tests.integration.factories import new_org, sessions_waiting_on_a_lock, wait_until

BULK_SLOTS = 2


def started(stack, org_id: str) -> list[tuple]:
    """(started_at, lane) of the org's chunks that started, in start order."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return list(
            conn.execute(
                "SELECT started_at, lane FROM import_chunks WHERE org_id = %s "
                "AND started_at IS NOT NULL ORDER BY started_at",
                (org_id,),
            )
        )


def test_a_small_batch_is_claimed_before_another_orgs_queued_flood(fault_stack):
    stack = fault_stack
    stack.env["IMPORTER_CHUNK_SIZE"] = "2000"
    stack.start_worker(concurrency=BULK_SLOTS)
    stack.start_web()
    flooding, waiting = new_org(stack), new_org(stack)
    flood_slug = flooding.create_report("vendor", VENDOR_MAPPING)
    small_slug = waiting.create_report("vendor", VENDOR_MAPPING)
    flood = flooding.post(
        f"/v1/import/{flood_slug}", json={"data": [vendor(n) for n in range(80_000)]}
    )
    assert flood.status_code == 202
    flood_id = flood.json()["batch_id"]
    wait_until(
        lambda: len(started(stack, flooding.org_id)) >= 4,
        timeout=120,
        what="the flood to be under way",
        every=0.05,
    )

    answer = {}
    with psycopg.connect(stack.env["DATABASE_URL"]) as blocker:
        # Writes into vendors wait (a SHARE lock lets reads through, not rows): every
        # bulk slot ends up holding a flood chunk that cannot finish, so the bulk lane
        # releases nothing more while the small batch comes, however fast chunks are.
        blocker.execute("LOCK TABLE vendors IN SHARE MODE")
        wait_until(
            lambda: sessions_waiting_on_a_lock(stack.env["DATABASE_URL"]) >= BULK_SLOTS,
            timeout=120,
            what="every bulk slot's chunk waiting to write",
            every=0.02,
        )
        poster = threading.Thread(
            target=lambda: answer.update(
                small=waiting.post(
                    f"/v1/import/{small_slug}", json={"data": [vendor(1), vendor(2)]}
                )
            )
        )
        poster.start()
        wait_until(
            lambda: started(stack, waiting.org_id),
            timeout=60,
            what="the small batch's chunk to start while the flood's wait",
            every=0.02,
        )
        blocker.rollback()
    poster.join(120)
    small = answer["small"]

    assert small.status_code == 200
    assert small.json()["created_count"] == 2
    done = flooding.wait_done(flood_id, timeout=300)
    assert (done["status"], done["created_count"]) == ("completed", 80_000)

    ((small_started, lane),) = started(stack, waiting.org_id)
    assert lane == "interactive"
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        (small_received,) = conn.execute(
            "SELECT received_at FROM import_batches WHERE org_id = %s", (waiting.org_id,)
        ).fetchone()
    flood_started = [at for at, _ in started(stack, flooding.org_id)]
    behind = [at for at in flood_started if at > small_received]
    overtook = [at for at in behind if at < small_started]
    # The flood still had this much work when the small batch came, and none of it
    # started before the small batch: the lane had released one chunk per bulk slot,
    # all being written, and the small batch took the interactive slot. Without the
    # lanes it waited behind the whole flood.
    assert len(behind) > 10 * BULK_SLOTS
    assert overtook == []
