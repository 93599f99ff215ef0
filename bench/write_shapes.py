"""The write's shapes side by side, one process, in one run, on this machine's PostgreSQL.

* A batch of 100,000 vendor records, half of them new, half changing existing objects,
  written in chunks of 5,000: the service's write (one key read, a binary COPY of the
  new rows, the upsert of the changed ones; ``importer.upsert.write_records``) against
  one staged ``INSERT ... ON CONFLICT`` for every row (``upsert_rows``).
* The same 100,000 records re-sent unchanged: skipped (no write: the service when no
  older batch of the org is unfinished), against every row given the batch's
  ``written_seq`` and nothing else (what later wins needs while an older batch may still
  write; ``updated_at`` stays, so no indexed column changes and the new row version may
  be HOT).

Each variant writes its own org's rows; the variants alternate, each starts after a
``CHECKPOINT`` (as a nightly import would, long after the last one: the first change
to each page after a checkpoint writes the whole page to the WAL), and the medians of
the rounds are printed with the WAL bytes (the records of this database, read with
``pg_waldump`` between ``pg_current_wal_lsn()`` before and after; the server's whole
WAL meanwhile when pg_waldump cannot read them).

    python -m bench.write_shapes [--records 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.data import MAPPING, records
from bench.e2e import database_wal_bytes, wal_lsn
from bench.stack import deployment
from importer import catalog, orgs
from importer.config import normalize_database_url
from importer.db import Database, utcnow
from importer.upsert import upsert_rows, write_records
from importer.validation import validate_records

VENDOR = catalog.CATALOG["vendor"]
CHUNK = 5000


def values(start: int, count: int, generation: int) -> list[dict[str, Any]]:
    outcome = validate_records(
        records(start, count, generation),
        base_object="vendor",
        mapping=MAPPING,
        org_choices={"vendor_statuses": list(catalog.DEFAULT_VENDOR_STATUSES)},
    )
    return [row for _, row in outcome.valid]


def measured(url: str, step: Callable[[], None]) -> tuple[float, int]:
    """(seconds, bytes of WAL): this database's records when pg_waldump can read
    them, else the server's whole WAL meanwhile."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) vendors")
        conn.execute("CHECKPOINT")
        before = wal_lsn(url)
        started = time.perf_counter()
        step()
        seconds = time.perf_counter() - started
        after = wal_lsn(url)
        row = conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (after, before)).fetchone()
    assert row is not None
    own = database_wal_bytes(url, before, after)
    return seconds, int(row[0]) if own is None else own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    count = args.records
    seed, batch = values(0, count // 2, 0), values(0, count, 1)
    figures: dict[str, list[tuple[float, int]]] = {}
    with deployment() as stack:
        url = stack.env["DATABASE_URL"]
        db = Database(normalize_database_url(url))

        def new_org() -> str:
            with db.session() as session:
                org, _ = orgs.create_org(session, "shapes")
                return org.id

        def write(org_id: str, rows: list[dict[str, Any]], seq: int, how: str) -> None:
            for start in range(0, len(rows), CHUNK):
                chunk = [dict(row) for row in rows[start : start + CHUNK]]
                with db.session() as session:
                    if how == "service":
                        write_records(
                            session,
                            org_id=org_id,
                            base_object="vendor",
                            mapping=MAPPING,
                            seq=seq,
                            records=list(enumerate(chunk)),
                        )
                    else:
                        upsert_rows(session, VENDOR, org_id, seq, utcnow(), chunk, touch=True)

        for _ in range(args.rounds):
            orgs_by_shape = {}
            for shape in ("service", "one statement"):
                org_id = orgs_by_shape[shape] = new_org()
                write(org_id, seed, 1, "service")
                figures.setdefault(f"mixed: {shape}", []).append(
                    measured(url, lambda o=org_id, s=shape: write(o, batch, 2, s))
                )
            # Identical re-imports of what each org now holds: skipped, or seq moved.
            for shape, how in (("skipped", "service"), ("written_seq moved", "one statement")):
                org_id = orgs_by_shape["service"]
                figures.setdefault(f"identical: {shape}", []).append(
                    measured(url, lambda o=org_id, h=how: write(o, batch, 3, h))
                )
        db.dispose()
    mib = 1024 * 1024
    print(
        f"The write, {count:,} records in chunks of {CHUNK:,}, one process, median of "
        f"{args.rounds} (each after a CHECKPOINT):"
    )
    print("  | shape | seconds | records/s | WAL MiB |")
    print("  |---|---|---|---|")
    for name, runs in figures.items():
        seconds = statistics.median(run[0] for run in runs)
        wal = statistics.median(run[1] for run in runs)
        print(f"  | {name} | {seconds:.2f} | {count / seconds:,.0f} | {wal / mib:,.1f} |")


if __name__ == "__main__":
    main()
