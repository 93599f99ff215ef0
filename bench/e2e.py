"""End to end: a 100,000-record batch over HTTP on the distributed deployment.

Measures in one run, side by side:
  * end to end: POST 100,000 vendor records (half of them updates of existing ones)
    and long-poll until completed, with 2 worker processes;
  * the ceiling: a binary COPY of the same rows, as stored, into an empty table
    created ``LIKE vendors INCLUDING ALL`` (the same columns and indexes), and the
    same with ``vendors``' foreign key to ``orgs`` added;
  * extra lines: a COPY of the same 10 values into an empty unindexed table, and the
    naive way, on a sample: per record, a marshmallow load with a new schema, then an
    ORM query by external_id and an update or an add;
  * re-imports of a 100,000-record snapshot, in the same deployment after the batch
    above: every record changed, then the same snapshot again, identical (the table
    vacuumed before each); the time and the WAL written (``pg_current_wal_lsn()``
    before and after: the server's whole WAL, so other databases' writes on the
    machine count too; and, read with ``pg_waldump`` where it can be, the records of
    this database alone) of each;
  * memory: peak RSS of the web process and of the workers during the batch (and
    during a 10x smaller one, to see whether the workers grow with the batch);
  * scaling: the end-to-end figure with 1, 2 and 4 worker processes.

    python -m bench.e2e [--records 100000] [--scaling 1,2,4] [--naive-sample 3000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from marshmallow import Schema, fields
from sqlalchemy.orm import Session

from bench.data import COLUMNS, MAPPING, records
from bench.stack import (
    backend_pids,
    children,
    cpu_seconds,
    deployment,
    new_org,
    rss_bytes,
    service_pids,
)
from importer import catalog
from importer.config import normalize_database_url
from importer.db import Base, utcnow
from importer.ids import VENDOR, new_id
from importer.models import OBJECT_TABLES
from importer.upsert import _copy_types, _row_columns
from importer.validation import validate_records


class NaiveVendor(Base):
    """The vendors table through the ORM, as a naive importer would use it."""

    __table__ = OBJECT_TABLES["vendor"]


class NaiveVendorSchema(Schema):
    external_id = fields.String(required=True, data_key="Supplier ID")
    name = fields.String(required=True, data_key="Supplier Name")
    website = fields.URL(data_key="Website")
    description = fields.String(data_key="Description")
    hq_location = fields.String(data_key="HQ")
    status = fields.String(data_key="Status")
    category = fields.String(data_key="Category")
    raw_irq_score = fields.Float(data_key="IRQ Score")
    contract_end_date = fields.Date(data_key="Contract End")
    primary_contact_email = fields.Email(data_key="Contact Email")


@dataclass
class Peak:
    """Peak RSS above the idle level, sampled every 20 ms."""

    pids: list[int]
    idle: dict[int, int] = field(default_factory=dict)
    peak: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Peak:
        self.idle = {pid: rss_bytes(pid) for pid in self.pids}
        self.peak = dict(self.idle)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_bytes(pid))

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def max_peak(self) -> int:
        return max(self.peak.values())

    def max_growth(self) -> int:
        return max(self.peak[pid] - self.idle[pid] for pid in self.pids)


def import_and_wait(api: Any, slug: str, body: bytes) -> tuple[float, float]:
    """(seconds until the 202, seconds until the batch completed)."""
    started = time.perf_counter()
    response = api.post(
        f"/v1/import/{slug}", data=body, headers={"Content-Type": "application/json"}, timeout=600
    )
    accepted = time.perf_counter() - started
    if response.status_code not in (200, 202):
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:300]}")
    done = api.wait_done(response.json()["batch_id"], timeout=900)
    elapsed = time.perf_counter() - started
    if done["failed_count"]:
        raise RuntimeError(f"{done['failed_count']} records failed: {done['errors'][:3]}")
    return accepted, elapsed


def wal_lsn(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


_WAL_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+),.*? rel \d+/(\d+)/")


def database_wal_bytes(database_url: str, start: str, end: str) -> int | None:
    """Bytes of the WAL records between two LSNs that touch this database's relations
    (full-page images included; commit records, which name no relation, aside), read
    by ``pg_waldump`` from the server's ``pg_wal``; None when that cannot be read (no
    rights, another machine, the segments recycled already). Other databases of the
    server (other people's tests) write to the same WAL: this is this import's own."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), "
            "current_setting('data_directory'), "
            "(SELECT setting FROM pg_config WHERE name = 'BINDIR')"
        ).fetchone()
    if found is None:
        return None
    oid, data_directory, bindir = found
    try:
        dump = subprocess.run(
            [f"{bindir}/pg_waldump", "-p", f"{data_directory}/pg_wal", "-s", start, "-e", end],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for line in dump.stdout.splitlines():
        match = _WAL_RECORD.search(line)
        if match and int(match.group(2)) == oid:
            total += int(match.group(1))
    return total


def timed_import(
    api: Any, slug: str, body: bytes, database_url: str
) -> tuple[float, int, int | None]:
    """(seconds until the batch completed, bytes of WAL the server wrote meanwhile, of
    which this database's records, or None).

    The table is vacuumed and analyzed first, so the dead rows of the import before
    are not vacuumed in the middle of this one (as autovacuum would by the time a
    nightly snapshot comes again)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) vendors")
    before = wal_lsn(database_url)
    _, seconds = import_and_wait(api, slug, body)
    after = wal_lsn(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(%s, %s)", (after, before)).fetchone()
    assert row is not None
    return seconds, int(row[0]), database_wal_bytes(database_url, before, after)


def end_to_end(
    workers: int, count: int, measure_memory: bool = False, reimport: bool = False
) -> dict[str, Any]:
    """One deployment with ``workers`` worker processes; the e2e time of the batch
    (and, with ``reimport``, of a changed then an identical re-import after it)."""
    with deployment(IMPORTER_WEB_WORKERS="2") as stack:
        worker = stack.start_worker(concurrency=workers)
        web = stack.start_web()
        api = new_org(stack)
        slug = api.create_report("vendor", MAPPING)
        api.session.patch(
            f"{api.base_url}/v1/import-reports/{slug}", json={"mapping": MAPPING}
        ).raise_for_status()
        # Half of the measured batch updates objects that exist already.
        seed = orjson.dumps({"data": records(0, count // 2)})
        import_and_wait(api, slug, seed)
        body = orjson.dumps({"data": records(0, count, generation=1)})
        result: dict[str, Any] = {"workers": workers, "records": count, "body_bytes": len(body)}
        if measure_memory:
            small = orjson.dumps({"data": records(10 * count, count // 10)})
            with Peak(children(worker)) as small_peak:
                import_and_wait(api, slug, small)
            result["worker_growth_small"] = small_peak.max_growth()
            pids = children(web) + children(worker)
            with Peak(pids) as peak:
                cpu = cpu_split(stack)
                accepted, seconds = import_and_wait(api, slug, body)
                result["cpu"] = {k: v - cpu[k] for k, v in cpu_split(stack).items()}
            web_pids = children(web)
            result["web_peak"] = max(peak.peak[pid] for pid in web_pids)
            result["web_growth"] = max(peak.peak[pid] - peak.idle[pid] for pid in web_pids)
            result["worker_growth"] = max(
                peak.peak[pid] - peak.idle[pid] for pid in children(worker)
            )
        else:
            cpu = cpu_split(stack)
            accepted, seconds = import_and_wait(api, slug, body)
            result["cpu"] = {k: v - cpu[k] for k, v in cpu_split(stack).items()}
        result["accepted_seconds"] = accepted
        result["seconds"] = seconds
        result["rate"] = count / seconds
        result["database_url"] = stack.env["DATABASE_URL"]
        if reimport:
            # The same 100,000 objects, every value of one field changed; then the
            # very same body again, as a nightly snapshot with nothing new.
            database_url = stack.env["DATABASE_URL"]
            snapshot = orjson.dumps({"data": records(0, count, generation=2)})
            result["changed_seconds"], result["changed_wal"], result["changed_own_wal"] = (
                timed_import(api, slug, snapshot, database_url)
            )
            (
                result["identical_seconds"],
                result["identical_wal"],
                result["identical_own_wal"],
            ) = timed_import(api, slug, snapshot, database_url)
        return result


def cpu_split(stack: Any) -> dict[str, float]:
    """CPU seconds so far of the web and worker processes, of this database's
    PostgreSQL backends, and of this process (the load generator). PostgreSQL's own
    background processes (WAL writer, checkpointer) are not counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "service": cpu_seconds(service_pids(stack)),
        "postgres": cpu_seconds(backend_pids(stack.env["DATABASE_URL"])),
        "client": usage.ru_utime + usage.ru_stime,
    }


def copy_ceiling(count: int) -> tuple[float, float]:
    """Records/s of a binary COPY of the batch's rows, as the service stores them
    (validated values, ids, times, seqs), into an empty table shaped like ``vendors``:
    its columns, primary key, unique (org_id, external_id) and index on
    (org_id, updated_at). No upsert can be faster on this table. Also the same COPY
    into such a table that has ``vendors``' foreign key to ``orgs`` too (``LIKE`` does
    not copy it; every row inserted into ``vendors`` pays its check)."""
    base = catalog.CATALOG["vendor"]
    table = OBJECT_TABLES["vendor"]
    columns = _row_columns(base)
    outcome = validate_records(
        records(0, count, generation=1),
        base_object="vendor",
        mapping=MAPPING,
        org_choices={"vendor_statuses": list(catalog.DEFAULT_VENDOR_STATUSES)},
    )
    now = utcnow()
    constants = {"org_id": "cborg_ceiling", "created_at": now, "updated_at": now}
    constants |= {"created_seq": 1, "written_seq": 1}
    rows = [
        [
            new_id(VENDOR) if name == "id" else values.get(name, constants.get(name))
            for name in columns
        ]
        for _, values in outcome.valid
    ]
    rates = []
    with deployment() as stack, psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        conn.execute(
            "INSERT INTO orgs (id, name, vendor_statuses, created_at) "
            "VALUES ('cborg_ceiling', 'ceiling', '[]', now())"
        )
        for name, extra in (
            ("copy_ceiling", ""),
            ("copy_with_fk", ", FOREIGN KEY (org_id) REFERENCES orgs (id)"),
        ):
            conn.execute(f"CREATE TABLE {name} (LIKE vendors INCLUDING ALL{extra})")
            conn.commit()
            started = time.perf_counter()
            statement = f"COPY {name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
            with conn.cursor().copy(statement) as copy:
                copy.set_types(_copy_types(table, columns))
                for row in rows:
                    copy.write_row(row)
            conn.commit()
            rates.append(count / (time.perf_counter() - started))
    return rates[0], rates[1]


def copy_unindexed(count: int) -> float:
    """Records/s of a raw COPY of the same 10 values into an empty unindexed table
    (not a ceiling for an upsert: no key, no index, no constraint)."""
    rows = [tuple(rec[MAPPING[column]] for column in COLUMNS) for rec in records(0, count, 1)]
    with deployment() as stack, psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        conn.execute(
            "CREATE TABLE copy_target (external_id text, name text, website text, "
            "description text, hq_location text, status text, category text, "
            "raw_irq_score double precision, contract_end_date date, primary_contact_email text)"
        )
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY copy_target ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return count / (time.perf_counter() - started)


def naive_baseline(sample: int) -> float:
    """Records/s of per-record marshmallow + ORM upserts, half of them updates."""
    with deployment() as stack:
        engine = sa.create_engine(normalize_database_url(stack.env["DATABASE_URL"]))
        org_id = orjson.loads(stack.run("create-org", "naive"))["org_id"]
        with Session(engine) as session:
            now = utcnow()
            for rec in records(0, sample // 2):
                values = NaiveVendorSchema().load(rec)
                session.add(
                    NaiveVendor(
                        id=new_id(VENDOR),
                        org_id=org_id,
                        created_at=now,
                        updated_at=now,
                        created_seq=1,
                        written_seq=1,
                        **values,
                    )
                )
            session.commit()
            started = time.perf_counter()
            for rec in records(0, sample, generation=1):
                values = NaiveVendorSchema().load(rec)  # a new schema per record
                vendor = session.scalars(
                    sa.select(NaiveVendor).where(
                        NaiveVendor.org_id == org_id,
                        NaiveVendor.external_id == values["external_id"],
                    )
                ).one_or_none()
                if vendor is None:
                    vendor = NaiveVendor(
                        id=new_id(VENDOR), org_id=org_id, created_at=utcnow(), created_seq=2
                    )
                    session.add(vendor)
                for name, value in values.items():
                    setattr(vendor, name, value)
                vendor.updated_at, vendor.written_seq = utcnow(), 2
                session.commit()
            rate = sample / (time.perf_counter() - started)
        engine.dispose()
        return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--scaling", default="1,2,4")
    parser.add_argument("--naive-sample", type=int, default=3000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    ceiling_rate, with_fk_rate = copy_ceiling(args.records)
    copy_rate = copy_unindexed(args.records)
    naive_rate = naive_baseline(args.naive_sample)
    main_run = end_to_end(2, args.records, measure_memory=True, reimport=True)
    scaling = {
        workers: (main_run if workers == 2 else end_to_end(workers, args.records))
        for workers in [int(w) for w in args.scaling.split(",")]
    }
    mib = 1024 * 1024
    e2e = main_run["rate"]
    out = io.StringIO()
    print(
        f"End to end, {args.records:,} vendor records (half updates), 2 worker processes:", file=out
    )
    print(
        f"  {e2e:,.0f} records/s ({main_run['seconds']:.1f} s, of which "
        f"{main_run['accepted_seconds']:.1f} s until the 202)",
        file=out,
    )
    print(
        f"  COPY of the same rows into a table LIKE vendors (the ceiling): {ceiling_rate:,.0f} "
        f"records/s -> e2e / COPY = {e2e / ceiling_rate:.2f}  (target >= 0.5)",
        file=out,
    )
    print(
        f"  the same COPY, the table also with vendors' foreign key to orgs: {with_fk_rate:,.0f} "
        f"records/s -> e2e / COPY with the key = {e2e / with_fk_rate:.2f}",
        file=out,
    )
    cpu = main_run["cpu"]
    spent = cpu["service"] + cpu["postgres"]
    cores = os.cpu_count() or 1
    best = args.records / (spent / cores)
    print(
        f"  CPU of the batch: web and workers {cpu['service']:.1f} s, this database's "
        f"PostgreSQL backends {cpu['postgres']:.1f} s (the load generator {cpu['client']:.1f} s "
        f"more); on {cores} cores that alone takes at least {spent / cores:.2f} s: "
        f"{best:,.0f} records/s at best -> e2e / COPY <= {best / ceiling_rate:.2f} for this CPU",
        file=out,
    )
    print(
        f"  COPY into an empty unindexed table: {copy_rate:,.0f} records/s -> "
        f"e2e / unindexed COPY = {e2e / copy_rate:.2f}",
        file=out,
    )
    print(
        f"  naive ORM + marshmallow/record: {naive_rate:,.0f} records/s -> "
        f"e2e / naive = {e2e / naive_rate:.1f}  (target >= 20)",
        file=out,
    )
    changed_s, identical_s = main_run["changed_seconds"], main_run["identical_seconds"]
    changed_wal, identical_wal = main_run["changed_wal"], main_run["identical_wal"]
    changed_own, identical_own = main_run["changed_own_wal"], main_run["identical_own_wal"]

    def own(wal: int | None) -> str:
        return "n/a" if wal is None else f"{wal / mib:,.1f} MiB"

    print(
        f"Re-import of a {args.records:,}-record snapshot (objects all there), 2 worker processes:",
        file=out,
    )
    print(
        f"  every record changed: {changed_s:.1f} s ({args.records / changed_s:,.0f} records/s), "
        f"WAL {changed_wal / mib:,.1f} MiB (this database's records: {own(changed_own)})",
        file=out,
    )
    print(
        f"  identical:            {identical_s:.1f} s ({args.records / identical_s:,.0f} "
        f"records/s), WAL {identical_wal / mib:,.1f} MiB (this database's records: "
        f"{own(identical_own)})",
        file=out,
    )
    print(
        f"  identical / changed: time {identical_s / changed_s:.2f} (target <= 0.5), "
        f"WAL {identical_wal / changed_wal:.2f} (target <= 0.3)",
        file=out,
    )
    if changed_own and identical_own is not None:
        print(
            "  identical / changed, this database's WAL records: "
            f"{identical_own / changed_own:.2f}",
            file=out,
        )
    body = main_run["body_bytes"]
    print(f"Memory during the batch (request body {body / mib:.1f} MiB):", file=out)
    print(
        f"  web process: peak RSS {main_run['web_peak'] / mib:.0f} MiB, growth "
        f"{main_run['web_growth'] / mib:.0f} MiB = {main_run['web_growth'] / body:.2f} x the body "
        "(target <= 6)",
        file=out,
    )
    print(
        f"  worker processes: growth {main_run['worker_growth'] / mib:.0f} MiB for "
        f"{args.records:,} records, {main_run['worker_growth_small'] / mib:.0f} MiB for "
        f"{args.records // 10:,} (flat in the batch size when these are close)",
        file=out,
    )
    print("Scaling (end to end):", file=out)
    print("  | worker processes | records/s | x 1 worker |", file=out)
    print("  |---|---|---|", file=out)
    one = scaling.get(1, main_run)["rate"]
    for workers, run in scaling.items():
        print(f"  | {workers} | {run['rate']:,.0f} | {run['rate'] / one:.2f} |", file=out)
    print(out.getvalue())
    if args.json:
        figures = {
            "ceiling_rate": ceiling_rate,
            "with_fk_rate": with_fk_rate,
            "copy_rate": copy_rate,
            "naive_rate": naive_rate,
            "main": main_run,
            "scaling": {str(k): v for k, v in scaling.items()},
        }
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, default=str)


if __name__ == "__main__":
    main()
