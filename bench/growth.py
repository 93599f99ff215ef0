"""Growth: the service with a million objects and a year of bookkeeping.

On the distributed deployment (PostgreSQL, Redis, ``importer web``, one ``importer
worker`` of 2 processes), in one run:

1. imports 100,000-record batches into one org (each 80,000 new vendors and 20,000
   updates of existing ones) until it holds about a million vendors, timing each batch;
   between batches, what autovacuum would do: this machine's PostgreSQL runs with
   ``autovacuum = off``, so each table whose dead rows (or new rows, or changes since
   its last analyze) pass the thresholds its storage parameters give (PostgreSQL's
   defaults where it has none) is vacuumed and analyzed here, and the dead rows of
   ``vendors`` are recorded;
2. adds a year of history: 10,000 finished batches spread over 208 days and 10,000
   webhook deliveries (written with SQL, as the service would have left them);
3. times, each as the median of several requests over HTTP, a point lookup
   (``GET /v1/vendors/{id}``, the baseline) and each list's first page and a page deep
   in it by cursor; ``importer status --json`` as a whole command; ``/ops/data.json``;
4. measures the bookkeeping bytes per imported record, and the database bytes per
   object before and after a purge (run as if 31 days had passed);
5. writes the ``EXPLAIN (ANALYZE, BUFFERS)`` of each list query to ``--plans``.

``--autovacuum default`` resets the object tables' storage parameters first (to
compare PostgreSQL's defaults with the migration's).

    python -m bench.growth [--batches 13] [--batch-size 100000] [--updates 20000]
                           [--history 10000] [--autovacuum tuned|default]
                           [--plans docs/list-query-plans.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from app import create_app
from app.pagination import encode_cursor, scope_digest
from bench.data import MAPPING, records
from bench.stack import (
    Vacuums,
    autovacuum_pass,
    deployment,
    new_org,
    service_cpu,
)
from importer import outcomes, retention
from importer.config import Settings, normalize_database_url
from importer.db import Database, utcnow
from importer.models import OBJECT_TABLE_AUTOVACUUM
from tests.integration.stack import ROOT, Api, Stack

TARGET_THROUGHPUT = 0.85
TARGET_READ = 5.0
TARGET_STATUS_SECONDS = 1.0
OPS_TOKEN = "bench-ops-token"
REPEAT = 15

# --- imports ----------------------------------------------------------------------


def import_batch(api: Api, slug: str, body: bytes) -> float:
    started = time.perf_counter()
    response = api.post(
        f"/v1/import/{slug}", data=body, headers={"Content-Type": "application/json"}, timeout=600
    )
    if response.status_code not in (200, 202):
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:300]}")
    done = api.wait_done(response.json()["batch_id"], timeout=1800)
    if done["failed_count"]:
        raise RuntimeError(f"{done['failed_count']} records failed")
    return time.perf_counter() - started


def grow(
    api: Api, stack: Stack, slug: str, url: str, args: argparse.Namespace, vacuums: Vacuums
) -> tuple[list[float], list[float], int, int]:
    """The measured batches: (records/s of each, records per CPU-second of each,
    objects, records imported)."""
    rng = random.Random(7)
    new = args.batch_size - args.updates
    seed = args.updates
    import_batch(api, slug, orjson.dumps({"data": records(0, seed)}))
    objects, imported, rates, per_cpu = seed, seed, [], []
    for number in range(1, args.batches + 1):
        autovacuum_pass(url, vacuums)
        updated = sorted(rng.sample(range(objects), args.updates))
        batch = [records(key, 1, generation=number)[0] for key in updated]
        batch += records(objects, new, generation=number)
        body = orjson.dumps({"data": batch})
        cpu = service_cpu(stack, url)
        seconds = import_batch(api, slug, body)
        cpu = service_cpu(stack, url) - cpu
        objects += new
        imported += args.batch_size
        rates.append(args.batch_size / seconds)
        per_cpu.append(args.batch_size / cpu)
        print(
            f"  batch {number:2d}: {rates[-1]:8,.0f} records/s, {per_cpu[-1]:8,.0f} records "
            f"per CPU-second, {objects:,} objects",
            flush=True,
        )
    autovacuum_pass(url, vacuums)
    return rates, per_cpu, objects, imported


def update_only(
    api: Api, stack: Stack, slug: str, url: str, args: argparse.Namespace, objects: int
) -> tuple[list[float], Vacuums]:
    """Batches that only change existing objects (a nightly re-sync that changed every
    value): nothing but dead row versions for autovacuum's thresholds. Returns the
    records per CPU-second of each, and what autovacuum did."""
    rng = random.Random(11)
    vacuums = Vacuums()
    per_cpu = []
    for number in range(args.update_batches):
        autovacuum_pass(url, vacuums)
        keys = sorted(rng.sample(range(objects), args.batch_size))
        body = orjson.dumps({"data": [records(key, 1, 100 + number)[0] for key in keys]})
        cpu = service_cpu(stack, url)
        import_batch(api, slug, body)
        per_cpu.append(args.batch_size / (service_cpu(stack, url) - cpu))
        print(
            f"  update batch {number + 1}: {per_cpu[-1]:8,.0f} records per CPU-second", flush=True
        )
    autovacuum_pass(url, vacuums)
    return per_cpu, vacuums


# --- history ----------------------------------------------------------------------


def add_history(url: str, org_id: str, count: int) -> str:
    """``count`` finished batches of 10 records, one every 30 minutes back from now,
    each with its chunk; a webhook endpoint with ``count`` deliveries. Returns the
    endpoint's id."""
    with psycopg.connect(url) as conn:
        report_id, slug, mapping = conn.execute(
            "SELECT id, slug, mapping::text FROM import_reports WHERE org_id = %s", (org_id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO import_batches (id, org_id, report_id, report_version, slug, "
            "report_name, base_object, mapping, required, dry_run, status, received_count, "
            "created_count, updated_count, failed_count, processed_count, error_count, "
            "warning_count, chunk_count, chunks_finished, received_at, started_at, "
            "completed_at, request_id) "
            "SELECT 'cbbatch_' || md5('history' || g), %(org)s, %(report)s, 1, %(slug)s, "
            "%(slug)s, 'vendor', %(mapping)s::jsonb, '[]', false, 'completed', 10, 0, 10, 0, "
            "10, 0, 0, 1, 1, t, t, t + interval '2 seconds', 'bench-history' "
            "FROM generate_series(1, %(count)s) g, "
            "LATERAL (SELECT now() - g * interval '30 minutes' AS t) moment",
            {"org": org_id, "report": report_id, "slug": slug, "mapping": mapping, "count": count},
        )
        conn.execute(
            "INSERT INTO import_chunks (batch_id, org_id, batch_seq, lane, position, "
            "start_index, end_index, status, record_count, validated, created_count, "
            "updated_count, invalid_count, rejected_count, error_count, warning_count, "
            "attempts, created_at, started_at, finished_at) "
            "SELECT id, org_id, seq, 'bulk', 0, 0, 10, 'done', 10, true, 0, 10, 0, 0, 0, 0, 1, "
            "received_at, received_at, completed_at FROM import_batches "
            "WHERE request_id = 'bench-history'"
        )
        endpoint = "cbwhk_" + "b" * 32
        conn.execute(
            "INSERT INTO webhook_endpoints (id, org_id, url, events, secret, created_at) "
            "VALUES (%s, %s, 'https://example.com/hooks', '[\"Import.Completed\"]', "
            "'bench-secret-0123456789', now())",
            (endpoint, org_id),
        )
        conn.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, org_id, batch_id, event_id, "
            "event_type, body, status, attempt_count, created_at, delivered_at, attempts) "
            "SELECT 'cbwhdlv_' || md5('d' || g), %(endpoint)s, %(org)s, "
            "'cbbatch_' || md5('history' || g), 'cbevt_' || md5('e' || g), "
            "'Import.Completed', '\\x7b7d', 'delivered', 1, now() - g * interval '30 minutes', "
            "now() - g * interval '30 minutes', '[]' FROM generate_series(1, %(count)s) g",
            {"endpoint": endpoint, "org": org_id, "count": count},
        )
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("import_batches", "import_chunks", "webhook_deliveries"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    return endpoint


# --- reads --------------------------------------------------------------------------


def interleaved(calls: dict[str, Callable[[], Any]], rounds: int = REPEAT) -> dict[str, float]:
    """Median milliseconds of each call, the calls taken in turn round after round (a
    point lookup after every other call), so a change in the machine's load weighs on
    every figure alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(rounds + 2):
        for name, call in calls.items():
            for timed_name, timed_call in ((name, call), ("point", calls["point"])):
                started = time.perf_counter()
                timed_call()
                if round_number >= 2:  # two rounds of warm-up
                    times[timed_name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def get_ok(api: Api, path: str, **headers: str) -> Callable[[], Any]:
    def call() -> Any:
        response = api.get(path, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
        return response

    return call


@dataclass
class ListCase:
    name: str
    first: str
    deep: str | None
    deep_note: str = ""


def list_cases(url: str, org_id: str, endpoint: str, since: int, history: int) -> list[ListCase]:
    """Each list's first page and a page deep in it, by a cursor made for a key deep in
    the list (as the walk to it would have made it)."""
    with psycopg.connect(url) as conn:

        def key_at(sql: str, offset: int, *params: Any) -> tuple[Any, ...]:
            row = conn.execute(f"{sql} OFFSET {offset} LIMIT 1", params).fetchone()
            assert row is not None, sql
            return tuple(row)

        objects = conn.execute(
            "SELECT count FROM object_counts WHERE org_id = %s", (org_id,)
        ).fetchone()[0]
        deep_object = int(objects * 0.9)
        created = key_at(
            "SELECT created_at, id FROM vendors WHERE org_id = %s ORDER BY created_at, id",
            deep_object,
            org_id,
        )
        changed = conn.execute(
            "SELECT count(*) FROM vendors WHERE org_id = %s AND updated_at >= to_timestamp(%s)",
            (org_id, since),
        ).fetchone()[0]
        updated = key_at(
            "SELECT updated_at, id FROM vendors WHERE org_id = %s "
            "AND updated_at >= to_timestamp(%s) ORDER BY updated_at, id",
            changed // 2,
            org_id,
            since,
        )
        batches = conn.execute(
            "SELECT count(*) FROM import_batches WHERE org_id = %s", (org_id,)
        ).fetchone()[0]
        batch_seq = key_at(
            "SELECT seq FROM import_batches WHERE org_id = %s ORDER BY seq DESC",
            batches - 100,
            org_id,
        )
        delivery = key_at(
            "SELECT created_at, id FROM webhook_deliveries WHERE endpoint_id = %s "
            "ORDER BY created_at DESC, id DESC",
            history * 9 // 10,
            endpoint,
        )
        large_batch, large_results = conn.execute(
            "SELECT id, created_count + updated_count FROM import_batches "
            "WHERE org_id = %s AND request_id IS DISTINCT FROM 'bench-history' "
            "ORDER BY seq DESC LIMIT 1",
            (org_id,),
        ).fetchone()
    object_cursor = encode_cursor(
        scope_digest("vendors", org_id, None, None), deep_object, ("time", "str"), created
    )
    since_cursor = encode_cursor(
        scope_digest("vendors", org_id, None, since), changed // 2, ("time", "str"), updated
    )
    batch_cursor = encode_cursor(
        scope_digest("batches", org_id, None, None), batches - 100, ("int",), batch_seq
    )
    delivery_cursor = encode_cursor(
        scope_digest("deliveries", endpoint), history * 9 // 10, ("time", "str"), delivery
    )
    results_cursor = encode_cursor(
        scope_digest("results", large_batch), large_results - 1000, (), ()
    )
    return [
        ListCase(
            "vendors (oldest first)",
            "/v1/vendors?limit=50",
            f"/v1/vendors?limit=50&cursor={object_cursor}",
            f"at {deep_object:,} of {objects:,}",
        ),
        ListCase(
            "vendors changed in the last batch (updated_since)",
            f"/v1/vendors?updated_since={since}&limit=50",
            f"/v1/vendors?updated_since={since}&limit=50&cursor={since_cursor}",
            f"at {changed // 2:,} of {changed:,}",
        ),
        ListCase(
            "batches (newest first)",
            "/v1/import/batches?limit=50",
            f"/v1/import/batches?limit=50&cursor={batch_cursor}",
            f"at {batches - 100:,} of {batches:,}",
        ),
        ListCase(
            "batches ?status=failed (none)", "/v1/import/batches?status=failed&limit=50", None
        ),
        ListCase(
            "a 100,000-record batch's results",
            f"/v1/import/batches/{large_batch}/results?limit=50",
            f"/v1/import/batches/{large_batch}/results?limit=50&cursor={results_cursor}",
            f"at {large_results - 1000:,} of {large_results:,}",
        ),
        ListCase(
            "webhook deliveries (newest first)",
            f"/v1/webhooks/{endpoint}/deliveries?limit=50",
            f"/v1/webhooks/{endpoint}/deliveries?limit=50&cursor={delivery_cursor}",
            f"at {history * 9 // 10:,} of {history:,}",
        ),
        ListCase("import reports", "/v1/import-reports?limit=50", None, "1 report"),
        ListCase("webhooks", "/v1/webhooks?limit=50", None, "1 endpoint"),
    ]


def status_seconds(stack: Stack, repeat: int = 5) -> tuple[float, float]:
    """``importer status --json`` as a whole command (a new process, its imports, its
    queries): median wall seconds, and median CPU seconds (which the machine's other
    load does not inflate)."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cli", "status", "--json"],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


# --- the plans ----------------------------------------------------------------------

LIST_TABLES = (
    "vendors",
    "object_counts",
    "import_batches",
    "import_chunks",
    "webhook_",
    "import_reports",
)


def explain_lists(url: str, api_key: str, cases: list[ListCase]) -> list[tuple[str, str, str]]:
    """(request, statement, EXPLAIN ANALYZE) of every list statement the requests run,
    captured from the app itself on the benchmark's database."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings.from_env({"IMPORTER_DATA_DIR": folder, "DATABASE_URL": url})
        app = create_app(settings)
        database: Database = app.extensions["importer"].db
        captured: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and any(
                table in statement for table in LIST_TABLES
            ):
                captured.append((statement, parameters))

        event.listen(database.engine, "before_cursor_execute", capture)
        client = app.test_client()
        plans = []
        for case in cases:
            for path in filter(None, (case.first, case.deep)):
                captured.clear()
                response = client.get(path, headers={"Authorization": f"Bearer {api_key}"})
                assert response.status_code == 200, response.get_data(as_text=True)
                statements = list(captured)
                with database.engine.connect() as conn:
                    for statement, parameters in statements:
                        plan = conn.exec_driver_sql(
                            "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                        ).scalars()
                        plans.append((path, statement, "\n".join(plan)))
        event.remove(database.engine, "before_cursor_execute", capture)
        database.dispose()
    return plans


def write_plans(path: Path, plans: list[tuple[str, str, str]], objects: int) -> None:
    lines = [
        "# The list queries and their plans",
        "",
        'Written by `python -m bench.growth` (see docs/benchmarks.md, "Growth"): every '
        "statement the list endpoints run, captured from the app on the benchmark's database "
        f"({objects:,} vendors in one org, a year of batches), with its "
        "`EXPLAIN (ANALYZE, BUFFERS)`. Every list is read through an index in its order and "
        "stops after the page (`Limit`); `total` reads at most 10,001 index entries "
        "(`Limit` under the `Aggregate`) or one row of `object_counts`.",
        "",
    ]
    for request, statement, plan in plans:
        lines += [
            f"## `GET {request[:150]}{'…' if len(request) > 150 else ''}`",
            "",
            "```sql",
            " ".join(statement.split()),
            "```",
            "",
            "```",
            plan,
            "```",
            "",
        ]
    path.write_text("\n".join(lines))


# --- bytes ----------------------------------------------------------------------------

BOOKKEEPING = ("import_batches", "import_chunks", "idempotency_keys", "webhook_deliveries")


def sizes(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        found = {
            table: conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()[
                0
            ]
            for table in (*BOOKKEEPING, "vendors")
        }
        found["database"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[
            0
        ]
        found["results"], found["result_records"] = conn.execute(
            "SELECT coalesce(sum(pg_column_size(results)), 0), "
            "coalesce(sum(created_count + updated_count), 0) FROM import_chunks "
            "WHERE results IS NOT NULL"
        ).fetchone()
    return found


def json_results_bytes(url: str, sample: int = 10) -> tuple[int, int]:
    """The stored size of the same results in the JSON form every chunk had before
    (``[index, external_id, coverbase_id, action]``), on a sample of chunks:
    (bytes, records)."""
    database = Database(normalize_database_url(url))
    try:
        with database.session() as session:
            blobs = session.execute(
                sa.text(
                    "SELECT results FROM import_chunks WHERE results IS NOT NULL "
                    "ORDER BY id DESC LIMIT :n"
                ),
                {"n": sample},
            ).scalars()
            encoded = []
            records_count = 0
            for blob in blobs:
                items = outcomes.with_external_ids(session, outcomes.stored_items(blob))
                records_count += len(items)
                encoded.append(orjson.dumps(items))
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TEMPORARY TABLE json_results (results bytea)")
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO json_results VALUES (%s)", [(blob,) for blob in encoded]
                )
            stored = conn.execute(
                "SELECT sum(pg_column_size(results)) FROM json_results"
            ).fetchone()[0]
        return int(stored), records_count
    finally:
        database.dispose()


# --- the run ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=13)
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--update-batches", type=int, default=4)
    parser.add_argument("--autovacuum", choices=("tuned", "default"), default="tuned")
    parser.add_argument("--plans", type=Path, default=Path("docs/list-query-plans.md"))
    args = parser.parse_args()

    # The workers keep every detail while the benchmark runs (their own purge would take
    # the history's older half first): the purge measured is the one run below.
    with deployment(
        IMPORTER_WEB_WORKERS="2",
        IMPORTER_OPS_TOKEN=OPS_TOKEN,
        IMPORTER_BATCH_DETAIL_RETENTION_DAYS="3650",
        IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS="3650",
    ) as stack:
        url = stack.env["DATABASE_URL"]
        if args.autovacuum == "default":
            with psycopg.connect(url, autocommit=True) as conn:
                for table in ("vendors", "services", "assessments"):
                    conn.execute(
                        f"ALTER TABLE {table} RESET ({', '.join(OBJECT_TABLE_AUTOVACUUM)})"
                    )
        stack.start_worker(concurrency=2)
        stack.start_web()
        api = new_org(stack)
        slug = api.create_report("vendor", MAPPING)
        print(
            f"Growth: {args.batches} batches of {args.batch_size:,} "
            f"({args.batch_size - args.updates:,} new, {args.updates:,} updates), "
            f"autovacuum {args.autovacuum} (simulated between batches)",
            flush=True,
        )
        vacuums = Vacuums()
        rates, per_cpu, objects, imported = grow(api, stack, slug, url, args, vacuums)
        updates_cpu, update_vacuums = update_only(api, stack, slug, url, args, objects)
        imported += args.update_batches * args.batch_size
        since = int(time.time()) - 30  # the last batch's changes (and more)
        endpoint = add_history(url, api.org_id, args.history)

        with psycopg.connect(url) as conn:
            vendor_ids = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM vendors TABLESAMPLE SYSTEM (1) LIMIT 500"
                ).fetchall()
            ]
        lookups = iter(vendor_ids * 100)
        cases = list_cases(url, api.org_id, endpoint, since, args.history)
        calls: dict[str, Callable[[], Any]] = {
            "point": lambda: get_ok(api, f"/v1/vendors/{next(lookups)}")(),
            "ops": get_ok(api, "/ops/data.json", Authorization=f"Bearer {OPS_TOKEN}"),
            "metrics": get_ok(api, "/metrics"),
        }
        for case in cases:
            calls[case.first] = get_ok(api, case.first)
            if case.deep:
                calls[case.deep] = get_ok(api, case.deep)
        timed = interleaved(calls)
        point, ops, scrape = timed["point"], timed["ops"], timed["metrics"]
        read_rows = [
            (case, timed[case.first], timed[case.deep] if case.deep else None) for case in cases
        ]
        status, status_cpu = status_seconds(stack)

        api_key = api.session.headers["Authorization"].split(" ", 1)[1]
        plans = explain_lists(normalize_database_url(url), str(api_key), cases)
        write_plans(args.plans, plans, objects)

        before = sizes(url)
        json_bytes, json_records = json_results_bytes(url)
        settings = Settings.from_env({"DATABASE_URL": url})
        purged = retention.purge(
            Database(normalize_database_url(url)),
            settings,
            now=utcnow() + dt.timedelta(days=31),
        )
        with psycopg.connect(url, autocommit=True) as conn:
            for table in BOOKKEEPING:
                conn.execute(f"VACUUM FULL {table}")
        after = sizes(url)

    first, last = rates[0], rates[-1]
    batch_count = args.history + args.batches + args.update_batches + 1
    print()
    print(
        f"Throughput: first batch {first:,.0f} records/s, last {last:,.0f}: "
        f"last / first = {last / first:.2f} (target >= {TARGET_THROUGHPUT})"
    )
    print(
        f"  per CPU-second of the service and its PostgreSQL backends: first "
        f"{per_cpu[0]:,.0f}, last {per_cpu[-1]:,.0f}: last / first = "
        f"{per_cpu[-1] / per_cpu[0]:.2f}"
    )
    print(f"  every batch, records/s: {', '.join(f'{rate:,.0f}' for rate in rates)}")
    print(f"  every batch, records per CPU-second: {', '.join(f'{r:,.0f}' for r in per_cpu)}")
    print(
        f"  simulated autovacuum: {len(vacuums.runs)} VACUUM(s), {vacuums.seconds:.1f} s; "
        f"vendors vacuumed {sum(1 for name, _, _ in vacuums.runs if name == 'vendors')} time(s); "
        f"dead rows in vendors at most {vacuums.vendor_dead_peak:,} before a batch"
    )
    if updates_cpu:
        print(
            f"  then {len(updates_cpu)} batches of {args.batch_size:,} updates only: records per "
            f"CPU-second {', '.join(f'{r:,.0f}' for r in updates_cpu)}; vendors vacuumed "
            f"{sum(1 for name, _, _ in update_vacuums.runs if name == 'vendors')} time(s), "
            f"dead rows in vendors at most {update_vacuums.vendor_dead_peak:,} before a batch"
        )
    print()
    print(
        f"Reads at {objects:,} vendors and {batch_count:,} batches "
        f"(median ms; point lookup GET /v1/vendors/{{id}} = {point:.1f} ms):"
    )
    print("| list | first page ms | / point | deep page by cursor ms | / point | where |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for case, first_ms, deep_ms in read_rows:
        worst = max(worst, first_ms / point, (deep_ms or 0) / point)
        deep_text = f"{deep_ms:.1f} | {deep_ms / point:.2f}" if deep_ms is not None else "- | -"
        print(
            f"| {case.name} | {first_ms:.1f} | {first_ms / point:.2f} | {deep_text} | "
            f"{case.deep_note} |"
        )
    print(f"  worst list page / point lookup: {worst:.2f} (target <= {TARGET_READ})")
    print(
        f"  importer status --json (whole command): {status:.2f} s, {status_cpu:.2f} s of CPU "
        f"(target < {TARGET_STATUS_SECONDS} s); /ops/data.json {ops:.1f} ms; "
        f"/metrics {scrape:.1f} ms"
    )
    print()
    per_record = before["results"] / max(before["result_records"], 1)
    print(
        f"Bytes: results stored {per_record:.1f} bytes/record "
        f"(the same results as JSON: {json_bytes / max(json_records, 1):.1f})"
    )
    book_before = sum(before[table] for table in BOOKKEEPING)
    book_after = sum(after[table] for table in BOOKKEEPING)
    print(
        f"  bookkeeping (batches, chunks, keys, deliveries): {book_before / imported:.1f} "
        f"bytes/imported record; after the purge {book_after / imported:.1f}"
    )
    print(
        f"  database: {before['database'] / objects:.0f} bytes/object; after the purge "
        f"(+31 days) and VACUUM FULL of the bookkeeping: {after['database'] / objects:.0f} "
        f"(vendors table with its indexes: {before['vendors'] / objects:.0f})"
    )
    print(f"  purged: {purged.describe()}")
    print(f"  plans of the list queries: {args.plans}")


if __name__ == "__main__":
    main()
