"""Small synchronous batches: 100-record batches from 8 concurrent clients for 30 s.

Prints p50/p99 latency, batches/s and errors over HTTP on the distributed deployment
(PostgreSQL + Redis + 2 worker processes), and the same figures for an in-process
baseline measured in the same run: the same validation and upsert called directly
(no HTTP, no queue), by one caller and by 8 concurrent callers.

    python -m bench.small_batches [--seconds 30] [--clients 8] [--size 100]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import requests

from bench.data import MAPPING, records
from bench.stack import deployment, new_org
from importer import orgs, reports
from importer.config import normalize_database_url
from importer.db import Database
from importer.upsert import write_records
from importer.validation import validate_records


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def hammer(clients: int, seconds: float, call: Callable[[int, int], bool]) -> dict[str, Any]:
    """``clients`` threads each calling ``call(client, n)`` in a loop for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        nonlocal errors
        start.wait()
        for n in itertools.count():
            if time.monotonic() >= deadline:
                return
            began = time.perf_counter()
            ok = call(number, n)
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)
                errors += not ok

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    return {
        "batches": len(latencies),
        "errors": errors,
        "per_second": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
    }


def batch_for(client: int, n: int, size: int) -> list[dict[str, Any]]:
    """Every other batch updates the records of the batch before it."""
    first = (client * 1_000_000) + (n // 2) * size
    return records(first, size, generation=n % 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()

    with deployment(IMPORTER_WEB_WORKERS="2") as stack:
        stack.start_worker(concurrency=2)
        stack.start_web()
        api = new_org(stack)
        slug = api.create_report("vendor", MAPPING)
        url = f"{stack.base_url}/v1/import/{slug}"
        sessions = [requests.Session() for _ in range(args.clients)]
        for session in sessions:
            session.headers.update(api.session.headers)
            session.headers["Content-Type"] = "application/json"

        def over_http(client: int, n: int) -> bool:
            body = orjson.dumps({"data": batch_for(client, n, args.size)})
            response = sessions[client].post(url, data=body, timeout=60)
            return response.status_code == 200 and response.json()["failed_count"] == 0

        http = hammer(args.clients, args.seconds, over_http)

        # In-process baseline on the same database: validation + one upsert statement
        # + commit, exactly what the web and a worker do for such a batch.
        db = Database(normalize_database_url(stack.env["DATABASE_URL"]))
        with db.session() as session:
            org, _ = orgs.create_org(session, "baseline")
            report = reports.create_report(
                session,
                org,
                slug="baseline",
                report_name="b",
                base_object="vendor",
                mapping=MAPPING,
            )
            choices = org.choices()
        seq = itertools.count(1_000_000)

        def in_process(client: int, n: int) -> bool:
            outcome = validate_records(
                batch_for(client, n, args.size),
                base_object="vendor",
                mapping=report.mapping,
                required=report.required,
                org_choices=choices,
            )
            with db.session() as session:
                written = write_records(
                    session,
                    org_id=org.id,
                    base_object="vendor",
                    mapping=report.mapping,
                    seq=next(seq),
                    records=outcome.valid,
                )
            return outcome.failed_count == 0 and len(written.results) == args.size

        alone = hammer(1, min(args.seconds, 10), in_process)
        loaded = hammer(args.clients, args.seconds, in_process)
        db.dispose()

    def row(name: str, figures: dict[str, Any]) -> str:
        return (
            f"  | {name} | {figures['p50'] * 1000:.1f} | {figures['p99'] * 1000:.1f} | "
            f"{figures['per_second']:.1f} | {figures['errors']} |"
        )

    print(
        f"Small batches: {args.size} records each, {args.clients} concurrent clients, "
        f"{args.seconds:.0f} s"
    )
    print("  | path | p50 ms | p99 ms | batches/s | errors |")
    print("  |---|---|---|---|---|")
    print(row(f"HTTP + queue + worker, {args.clients} clients", http))
    print(row(f"in process, {args.clients} callers", loaded))
    print(row("in process, 1 caller", alone))
    print(
        f"  p50 HTTP / p50 in process, same load ({args.clients}): "
        f"{http['p50'] / loaded['p50']:.2f}  (target <= 3)"
    )
    print(f"  p50 HTTP / p50 in process, 1 caller:            {http['p50'] / alone['p50']:.2f}")


if __name__ == "__main__":
    main()
