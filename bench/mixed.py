"""Small synchronous imports while other orgs flood the service.

On the distributed deployment (PostgreSQL, Redis, ``importer web``, one ``importer
worker``), four phases in one run, so every figure has its baseline beside it:

1. org A alone: small synchronous batches from a few clients, at a steady rate (a busy
   interactive integration: each client sends its next batch when the previous one was
   answered, or at its next tick, whichever is later);
2. org B alone: a flood of 100,000-record batches posted back to back (asynchronous);
3. both at once: A's small batches while B floods again;
4. org B floods, and org C starts flooding once B's chunks are running: how long C's
   first chunk waited for a worker (against a chunk's time, measured in the same run),
   and the share of records written for each while both have work waiting.

Prints A's latency while B floods / alone, A's 202s, B's throughput with A / alone,
and B's and C's shares, against the targets of docs/benchmarks.md.

    python -m bench.mixed [--floods 5] [--flood-size 100000] [--small-size 100]
                          [--small-clients 2] [--small-rate 5] [--alone-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import requests

from bench.data import MAPPING, records
from bench.small_batches import percentile
from bench.stack import Vacuums, autovacuum_pass, deployment, new_org, service_cpu
from tests.integration.stack import Api, Stack


@dataclass
class SmallRun:
    latencies: list[float] = field(default_factory=list)
    accepted_later: int = 0  # answered 202 instead of 200
    errors: int = 0

    def figures(self) -> dict[str, float]:
        return {
            "count": len(self.latencies),
            "p50": statistics.median(self.latencies) * 1000,
            "p95": percentile(self.latencies, 0.95) * 1000,
            "p99": percentile(self.latencies, 0.99) * 1000,
        }


def small_batches(
    api: Api, slug: str, clients: int, size: int, rate: float, stop: threading.Event
) -> SmallRun:
    """``clients`` threads posting ``size``-record synchronous batches until ``stop``,
    ``rate`` batches per second in all (0: as fast as they are answered)."""
    run = SmallRun()
    lock = threading.Lock()
    url = f"{api.base_url}/v1/import/{slug}"

    def client(number: int) -> None:
        session = requests.Session()
        session.headers.update(api.session.headers)
        session.headers["Content-Type"] = "application/json"
        n = 0
        interval = clients / rate if rate else 0.0
        next_at = time.monotonic() + interval * number / clients
        while not stop.is_set():
            if interval:
                stop.wait(max(next_at - time.monotonic(), 0))
                next_at = max(next_at + interval, time.monotonic())
                if stop.is_set():
                    break
            first = 50_000_000 + number * 1_000_000 + (n // 2) * size
            body = orjson.dumps({"data": records(first, size, generation=n % 2)})
            began = time.perf_counter()
            response = session.post(url, data=body, timeout=120)
            elapsed = time.perf_counter() - began
            with lock:
                if response.status_code == 200:
                    run.latencies.append(elapsed)
                elif response.status_code == 202:
                    run.accepted_later += 1
                    run.latencies.append(elapsed)
                else:
                    run.errors += 1
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join()
    return run


def flood_bodies(org_number: int, floods: int, size: int) -> list[bytes]:
    return [
        orjson.dumps({"data": records(org_number * 10_000_000 + i * size, size)})
        for i in range(floods)
    ]


@dataclass
class FloodRun:
    batch_ids: list[str]
    began: float
    ended: float = 0.0
    #: When the first POST was sent and when its 202 came back (Unix seconds).
    first_posted_at: float = 0.0
    first_accepted_at: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.began


def flood(api: Api, slug: str, bodies: list[bytes]) -> FloodRun:
    """Post every body back to back (as an integration with a backlog does), then wait
    for the last batch. Throughput counts from the first POST to the last completion."""
    url = f"/v1/import/{slug}"
    began = time.perf_counter()
    batch_ids = []
    posted_at = accepted_at = 0.0
    for body in bodies:
        sent = time.time()
        response = api.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=300
        )
        assert response.status_code == 202, response.text[:300]
        if not batch_ids:
            posted_at, accepted_at = sent, time.time()
        batch_ids.append(response.json()["batch_id"])
    run = FloodRun(batch_ids, began, first_posted_at=posted_at, first_accepted_at=accepted_at)
    for batch_id in batch_ids:
        done = api.wait_done(batch_id, timeout=1800)
        assert done["status"] == "completed" and done["failed_count"] == 0, done["status"]
    run.ended = time.perf_counter()
    return run


def per_org(stack: Stack, query: str) -> dict[str, int]:
    """``query``'s (org_id, number) rows as a dict, read from the database."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        return {org_id: int(number) for org_id, number in conn.execute(query)}


#: Records of finished chunks, per org.
WRITTEN = (
    "SELECT org_id, coalesce(sum(end_index - start_index), 0) FROM import_chunks "
    "WHERE status = 'done' GROUP BY org_id"
)
#: Chunks being written, per org.
RUNNING = "SELECT org_id, count(*) FROM import_chunks WHERE status = 'processing' GROUP BY org_id"
#: Chunks not finished yet, per org.
WAITING = (
    "SELECT org_id, count(*) FROM import_chunks "
    "WHERE status IN ('pending', 'processing') GROUP BY org_id"
)


def newcomer_wait(stack: Stack, org_id: str) -> tuple[float, float]:
    """When the org's first chunk started (Unix seconds), and the median time a worker
    took over a bulk chunk in this run."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        (started,) = conn.execute(
            "SELECT extract(epoch FROM c.started_at) FROM import_chunks c "
            "JOIN import_batches b ON b.id = c.batch_id WHERE c.org_id = %s "
            "ORDER BY b.seq, c.position LIMIT 1",
            (org_id,),
        ).fetchone()
        (chunk,) = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM finished_at - started_at)) FROM import_chunks "
            "WHERE status = 'done' AND lane = 'bulk' AND record_count > 0"
        ).fetchone()
    return float(started), float(chunk)


def small_chunk_times(stack: Stack, org_id: str, since: float, until: float) -> dict[str, float]:
    """Where the time of the org's small batches went between two moments (Unix
    seconds): waiting for a worker (accepted to started) and being written (started to
    finished), p50 and p99 in ms, read from the database."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY w), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY w), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY r), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY r) FROM ("
            "SELECT extract(epoch FROM c.started_at - b.received_at) * 1000 AS w, "
            "extract(epoch FROM c.finished_at - c.started_at) * 1000 AS r "
            "FROM import_chunks c JOIN import_batches b ON b.id = c.batch_id "
            "WHERE c.org_id = %s AND c.finished_at IS NOT NULL "
            "AND b.received_at BETWEEN to_timestamp(%s) AND to_timestamp(%s)) t",
            (org_id, since, until),
        ).fetchone()
    return dict(zip(("wait_p50", "wait_p99", "run_p50", "run_p99"), map(float, row), strict=True))


def shares_while_both_busy(stack: Stack, orgs: list[str], runs: list[threading.Thread]) -> Any:
    """Sample the records written per org while every org of ``orgs`` has work waiting;
    returns each org's share of what was written in that window."""
    first: dict[str, int] | None = None
    last: dict[str, int] = {}
    status = ""
    while any(run.is_alive() for run in runs):
        waiting = per_org(stack, WAITING)
        busy = all(waiting.get(org, 0) > 0 for org in orgs)
        written = per_org(stack, WRITTEN)
        if busy:
            if first is None:
                first = written
            elif not status:  # what an operator sees meanwhile
                status = stack.run("status")
            last = written
        elif first is not None:
            break
        time.sleep(0.2)
    if first is None:
        return None
    added = {org: last.get(org, 0) - first.get(org, 0) for org in orgs}
    total = sum(added.values()) or 1
    return {org: added[org] / total for org in orgs}, total, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--floods", type=int, default=5)
    parser.add_argument("--flood-size", type=int, default=100_000)
    parser.add_argument("--small-size", type=int, default=100)
    parser.add_argument("--small-clients", type=int, default=2)
    parser.add_argument("--small-rate", type=float, default=5.0, help="batches/s in all")
    parser.add_argument("--alone-seconds", type=float, default=30)
    args = parser.parse_args()

    with deployment(IMPORTER_WEB_WORKERS="2") as stack:
        stack.start_worker(concurrency=2)
        stack.start_web()
        small_org, flooding, other = new_org(stack), new_org(stack), new_org(stack)
        small_slug = small_org.create_report("vendor", MAPPING)
        flood_slug = flooding.create_report("vendor", MAPPING)
        other_slug = other.create_report("vendor", MAPPING)
        bodies_b = flood_bodies(1, args.floods, args.flood_size)
        bodies_b2 = flood_bodies(2, args.floods, args.flood_size)
        bodies_b3 = flood_bodies(3, args.floods, args.flood_size)
        bodies_c = flood_bodies(4, args.floods, args.flood_size)
        records_per_flood = args.floods * args.flood_size

        url = stack.env["DATABASE_URL"]
        # This PostgreSQL runs with autovacuum off: between phases, what the server's
        # autovacuum would have done by then (after 500,000 new rows, an ANALYZE at least).
        vacuums = Vacuums()
        # A few of A's batches first, so neither phase pays the first calls' costs (each
        # web process compiles the report's validation once).
        warm = threading.Event()
        threading.Timer(3, warm.set).start()
        small_batches(
            small_org, small_slug, args.small_clients, args.small_size, args.small_rate, warm
        )

        # 1. A alone.
        stop = threading.Event()
        timer = threading.Timer(args.alone_seconds, stop.set)
        timer.start()
        cpu, began, alone_from = service_cpu(stack, url), time.perf_counter(), time.time()
        alone = small_batches(
            small_org, small_slug, args.small_clients, args.small_size, args.small_rate, stop
        )
        a_cores = (service_cpu(stack, url) - cpu) / (time.perf_counter() - began)
        a_alone_chunks = small_chunk_times(stack, small_org.org_id, alone_from, time.time())

        # 2. B alone.
        autovacuum_pass(url, vacuums)
        cpu = service_cpu(stack, url)
        b_alone = flood(flooding, flood_slug, bodies_b)
        b_alone_cpu = service_cpu(stack, url) - cpu

        # 3. A's small batches while B floods.
        autovacuum_pass(url, vacuums)
        stop = threading.Event()
        with_a: dict[str, FloodRun] = {}

        def flood_then_stop() -> None:
            with_a["run"] = flood(flooding, flood_slug, bodies_b2)
            stop.set()

        flooder = threading.Thread(target=flood_then_stop)
        cpu, during_from = service_cpu(stack, url), time.time()
        flooder.start()
        during = small_batches(
            small_org, small_slug, args.small_clients, args.small_size, args.small_rate, stop
        )
        flooder.join()
        b_with_a = with_a["run"]
        both_cpu = service_cpu(stack, url) - cpu
        a_during_chunks = small_chunk_times(stack, small_org.org_id, during_from, time.time())

        # 4. B floods; C starts once B's chunks run, then both flood at once.
        autovacuum_pass(url, vacuums)
        c_run: dict[str, FloodRun] = {}
        runs = [
            threading.Thread(target=flood, args=(flooding, flood_slug, bodies_b3)),
            threading.Thread(
                target=lambda: c_run.setdefault("run", flood(other, other_slug, bodies_c))
            ),
        ]
        runs[0].start()
        while per_org(stack, RUNNING).get(flooding.org_id, 0) == 0:
            time.sleep(0.05)
        runs[1].start()
        shared = shares_while_both_busy(stack, [flooding.org_id, other.org_id], runs)
        for run in runs:
            run.join()
        c_started, chunk_time = newcomer_wait(stack, other.org_id)
        c_first = c_run["run"]

    a0, a1 = alone.figures(), during.figures()
    b0 = records_per_flood / b_alone.seconds
    b1 = records_per_flood / b_with_a.seconds
    print(
        f"Mixed load: org A posts {args.small_size}-record synchronous batches from "
        f"{args.small_clients} clients ({args.small_rate:g}/s in all); org B posts "
        f"{args.floods} x {args.flood_size:,} records back to back"
    )
    print("  | org A's small batches | answered | p50 ms | p95 ms | p99 ms | 202s | errors |")
    print("  |---|---|---|---|---|---|---|")
    for name, run, figures in (
        (f"alone ({args.alone_seconds:.0f} s)", alone, a0),
        ("while B floods", during, a1),
    ):
        print(
            f"  | {name} | {figures['count']} | {figures['p50']:.0f} | {figures['p95']:.0f} | "
            f"{figures['p99']:.0f} | {run.accepted_later} | {run.errors} |"
        )
    print(f"  A's p99 while B floods / alone: {a1['p99'] / a0['p99']:.2f}  (target <= 3)")
    for name, times in (("alone", a_alone_chunks), ("while B floods", a_during_chunks)):
        print(
            f"    A's chunks {name}: waited for a worker p50 {times['wait_p50']:.0f} ms, "
            f"p99 {times['wait_p99']:.0f} ms; written in p50 {times['run_p50']:.0f} ms, "
            f"p99 {times['run_p99']:.0f} ms"
        )
    print(f"  A's batches answered 202 while B floods: {during.accepted_later}  (target 0)")
    print(
        f"  B's throughput: alone {b0:,.0f} records/s, with A {b1:,.0f} records/s -> "
        f"{b1 / b0:.2f}  (target >= 0.9)"
    )
    # Where the CPU went: the machine's cores are shared by A's batches and B's flood.
    cores = os.cpu_count() or 1
    b_cores = b_alone_cpu / b_alone.seconds
    b_per_cpu = records_per_flood / b_alone_cpu
    b_per_cpu_with_a = records_per_flood / max(both_cpu - a_cores * b_with_a.seconds, 1e-9)
    print(
        f"  CPU (web, workers and their PostgreSQL backends): A alone used {a_cores:.2f} of "
        f"the {cores} cores, B alone {b_cores:.2f}; what A leaves B: "
        f"{min(1.0, (cores - a_cores) / b_cores):.2f} of B's alone throughput"
    )
    print(
        f"  B's records per CPU-second: alone {b_per_cpu:,.0f}, with A (A's CPU at its alone "
        f"rate taken out) {b_per_cpu_with_a:,.0f} -> {b_per_cpu_with_a / b_per_cpu:.2f}"
    )
    print(
        f"  autovacuum off on this server: between phases, {len(vacuums.runs)} VACUUM (ANALYZE) "
        f"and the ANALYZEs autovacuum would have run ({vacuums.seconds:.1f} s, outside the "
        "measurements)"
    )
    if shared is None:
        print("  B and C: never both busy (floods too small to overlap)")
    else:
        (share, total, status) = shared
        print(
            f"  B and C flooding at once: of {total:,} records written while both were "
            f"busy, B {share[flooding.org_id]:.0%}, C {share[other.org_id]:.0%}  "
            "(target 40-60% each)"
        )
    waited = c_started - c_first.first_accepted_at
    reading = c_first.first_accepted_at - c_first.first_posted_at
    print(
        f"  C, starting while B floods: its first chunk started {waited:.2f} s after its "
        f"first batch was accepted (its 202; {reading:.2f} s after the POST began: the web "
        f"reading 100,000 records); a bulk chunk takes "
        f"{chunk_time:.2f} s (median) -> {waited / chunk_time:.2f} chunk times  (target: about 1)"
    )
    if shared is not None:
        print("\n`importer status` while B and C flood:\n" + shared[2])


if __name__ == "__main__":
    main()
