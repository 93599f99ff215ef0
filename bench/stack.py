"""The distributed deployment for a benchmark: a fresh PostgreSQL database, a Redis
database of its own, ``importer web`` and ``importer worker`` processes.

Built on the integration tests' process helpers (tests/integration/stack.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
import redis

from tests.integration.stack import REDIS_BASE_URL, Api, Process, Stack, fresh_stack

#: The Redis database benchmarks own (flushed at start and end).
REDIS_DB = int(os.environ.get("IMPORTER_BENCH_REDIS_DB", "13"))


@contextmanager
def deployment(**settings: str) -> Iterator[Stack]:
    """A fresh, migrated database and a flushed Redis database; the benchmark starts
    the web and worker processes it needs."""
    redis_url = f"{REDIS_BASE_URL}/{REDIS_DB}"
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    try:
        with fresh_stack(redis_url, **settings) as stack:
            yield stack
    finally:
        broker.flushdb()


def new_org(stack: Stack) -> Api:
    created = orjson.loads(stack.run("create-org", "bench"))
    return Api(stack.base_url, created["api_key"], created["org_id"])


def children(process: Process) -> list[int]:
    """The pids of a process's children (gunicorn's workers, Celery's pool processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == process.popen.pid:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (their /proc stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / _TICK


def service_pids(stack: Stack) -> list[int]:
    """The stack's web and worker processes and their children."""
    pids = [process.popen.pid for process in stack.processes]
    return pids + [child for process in stack.processes for child in children(process)]


def backend_pids(url: str) -> list[int]:
    """This database's PostgreSQL backends (but the one asking)."""
    with psycopg.connect(url) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchall()
        ]


def service_cpu(stack: Stack, url: str) -> float:
    """CPU seconds used so far by the web and worker processes and by this database's
    PostgreSQL backends: unlike the wall clock, not inflated by whatever else the
    machine runs."""
    return cpu_seconds(service_pids(stack) + backend_pids(url))


# --- autovacuum, as the server would run it (this machine's runs with it off) ---------

#: PostgreSQL's defaults for the thresholds autovacuum applies to a table.
AUTOVACUUM_DEFAULTS = {
    "autovacuum_vacuum_threshold": 50.0,
    "autovacuum_vacuum_scale_factor": 0.2,
    "autovacuum_vacuum_insert_threshold": 1000.0,
    "autovacuum_vacuum_insert_scale_factor": 0.2,
    "autovacuum_analyze_threshold": 50.0,
    "autovacuum_analyze_scale_factor": 0.1,
}


@dataclass
class Vacuums:
    """What the simulated autovacuum did, and the dead rows it found in ``vendors``."""

    runs: list[tuple[str, int, float]] = field(default_factory=list)
    vendor_dead_peak: int = 0
    seconds: float = 0.0


def autovacuum_pass(url: str, done: Vacuums) -> None:
    """VACUUM (ANALYZE) each table over its vacuum thresholds, ANALYZE each one over its
    analyze threshold, by its storage parameters or PostgreSQL's defaults."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT s.relname, s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze, "
            "greatest(c.reltuples, 0), coalesce(c.reloptions, '{}') "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE c.relpersistence = 'p'"
        ).fetchall()
        for name, dead, inserted, modified, tuples, options in rows:
            limits = dict(AUTOVACUUM_DEFAULTS)
            for option in options:
                key, _, value = option.partition("=")
                if key in limits:
                    limits[key] = float(value)
            if name == "vendors":
                done.vendor_dead_peak = max(done.vendor_dead_peak, dead)
            vacuum = (
                dead
                > limits["autovacuum_vacuum_threshold"]
                + limits["autovacuum_vacuum_scale_factor"] * tuples
                or inserted
                > limits["autovacuum_vacuum_insert_threshold"]
                + limits["autovacuum_vacuum_insert_scale_factor"] * tuples
            )
            analyze = (
                modified
                > limits["autovacuum_analyze_threshold"]
                + limits["autovacuum_analyze_scale_factor"] * tuples
            )
            if not (vacuum or analyze):
                continue
            started = time.perf_counter()
            conn.execute(f"{'VACUUM (ANALYZE)' if vacuum else 'ANALYZE'} {name}")
            seconds = time.perf_counter() - started
            done.seconds += seconds
            if vacuum:
                done.runs.append((name, dead, seconds))
