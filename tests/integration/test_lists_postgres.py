"""Object lists on PostgreSQL while imports keep writing: the incremental sync ("what
changed since T, page by page") has no gaps and no repeats, and the object count stays
exact under racing writers.

The sync client of these tests is what a downstream system runs: follow next_cursor
from ``?updated_since=T`` until it is null, then start the next run from the newest
``updated_at`` it saw (inclusive, so that second's objects come again: repeats across
runs are by design, never within one).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from importer import listing
from importer.batches import claim_chunk, write_chunk
from importer.config import Settings
from importer.db import Database
from importer.models import OBJECT_TABLES, ObjectCount
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox
from worker.tasks import run_chunk

TABLE = OBJECT_TABLES["vendor"]


@pytest.fixture
def settings(pg_database_url: str, tmp_path: Path) -> Settings:
    """The fast layer's app, client, org and report fixtures, on PostgreSQL."""
    return Settings.from_env(
        {"IMPORTER_DATA_DIR": str(tmp_path), "DATABASE_URL": pg_database_url},
        sync_wait_seconds=5.0,
    )


class Clock:
    """The time every writer stamps with, the claims record and the lists read."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    for module in ("importer.batches", "importer.upsert", "importer.listing"):
        monkeypatch.setattr(f"{module}.utcnow", moved)
    return moved


def record(key: int, version: str) -> dict[str, str]:
    return {"Supplier ID": f"V-{key:05d}", "Supplier Name": version}


class OpenWrite:
    """A chunk claimed (committed) and written, its transaction still open."""

    def __init__(self, db: Database, org, report, records) -> None:
        _, (chunk_id,) = accept_records(db, org, report, records, chunk_size=len(records))
        with db.session() as session:
            claim_chunk(session, chunk_id)
        self.session = db.new_session()
        write_chunk(self.session, chunk_id)

    def commit(self) -> None:
        self.session.commit()
        self.session.close()


def write(db: Database, org, report, records) -> None:
    OpenWrite(db, org, report, records).commit()


class SyncClient:
    def __init__(self, client, auth, limit: int = 4) -> None:
        self.client, self.auth, self.limit = client, auth, limit
        self.since = 0
        self.cursor: str | None = None
        self.runs: list[list[dict]] = [[]]

    def page(self) -> bool:
        """One page; True when it ended the run."""
        url = f"/v1/vendors?updated_since={self.since}&limit={self.limit}"
        if self.cursor:
            url += f"&cursor={self.cursor}"
        response = self.client.get(url, headers=self.auth)
        assert response.status_code == 200, response.json
        self.runs[-1].extend(response.json["items"])
        self.cursor = response.json["next_cursor"]
        if self.cursor is not None:
            return False
        if self.runs[-1]:
            self.since = max(item["updated_at"] for item in self.runs[-1])
        self.runs.append([])
        return True

    def run_to_end(self) -> None:
        while not self.page():
            pass

    def seen(self) -> set[tuple[str, str]]:
        return {(item["external_id"], item["name"]) for run in self.runs for item in run}

    def assert_no_repeats_within_a_run(self) -> None:
        for run in self.runs:
            versions = [(item["id"], item["name"]) for item in run]
            assert len(versions) == len(set(versions))
            stamps = [item["updated_at"] for item in run]
            assert stamps == sorted(stamps)


def final_versions(db: Database, org_id: str) -> set[tuple[str, str]]:
    with db.session() as session:
        rows = session.execute(
            sa.select(TABLE.c.external_id, TABLE.c.name).where(TABLE.c.org_id == org_id)
        )
        return {(external_id, name) for external_id, name in rows}


def _late_commit_scenario(db, client, auth, org, report, clock) -> SyncClient:
    """A write that began first commits last: A (P1) starts, B (P2, P3) starts later
    and commits, the client reads, then A commits."""
    write(db, org, report, [record(n, "v0") for n in (1, 2, 3)])
    clock.advance(2)
    first = OpenWrite(db, org, report, [record(1, "A")])
    clock.advance(2)
    write(db, org, report, [record(2, "B"), record(3, "B")])
    clock.advance(2)
    sync = SyncClient(client, auth)
    sync.run_to_end()
    first.commit()
    clock.advance(2)
    sync.run_to_end()
    return sync


def test_a_write_that_commits_late_is_not_skipped(
    db, client, auth, org_and_key, make_report, clock
):
    org, report = org_and_key[0], make_report()
    sync = _late_commit_scenario(db, client, auth, org, report, clock)
    assert (
        sync.seen()
        >= final_versions(db, org.id)
        == {
            ("V-00001", "A"),
            ("V-00002", "B"),
            ("V-00003", "B"),
        }
    )
    # The first run stopped before B's rows: A was still being written.
    assert {item["name"] for item in sync.runs[0]} == {"v0"}
    sync.assert_no_repeats_within_a_run()


def test_without_the_write_horizon_the_same_sync_skips_the_late_write(
    db, client, auth, org_and_key, make_report, clock, monkeypatch
):
    """The control: the scenario above catches a list that shows every committed row."""
    monkeypatch.setattr(listing, "write_horizon", lambda session, org_id: clock() + dt.timedelta(1))
    org, report = org_and_key[0], make_report()
    sync = _late_commit_scenario(db, client, auth, org, report, clock)
    assert final_versions(db, org.id) - sync.seen() == {("V-00001", "A")}


@pytest.mark.parametrize("seed", range(4))
def test_random_interleavings_of_writes_and_pages_leave_no_gap(
    db, client, auth, org_and_key, make_report, clock, seed
):
    """Writes begin, commit in any order and overlap the client's pages; whatever
    happened, every object's final version was read, and no run read a version twice."""
    org, report = org_and_key[0], make_report()
    rng = random.Random(seed)
    write(db, org, report, [record(n, "v0") for n in range(12)])
    next_key, versions = 12, 0
    open_writes: list[tuple[OpenWrite, set[int]]] = []
    sync = SyncClient(client, auth, limit=3)
    for _ in range(80):
        clock.advance(rng.choice([0.2, 0.6, 1.1]))
        action = rng.random()
        busy = set().union(*(keys for _, keys in open_writes))
        if action < 0.3 and len(open_writes) < 3:
            # Updates only: a write creating objects holds the org's count row to its
            # commit, and this test runs its writers in one thread.
            keys = set(rng.sample(sorted(set(range(next_key)) - busy), 2))
            versions += 1
            held = OpenWrite(db, org, report, [record(k, f"w{versions}") for k in keys])
            open_writes.append((held, keys))
        elif action < 0.5 and open_writes:
            held, _ = open_writes.pop(rng.randrange(len(open_writes)))
            held.commit()
        elif action < 0.65:
            versions += 1
            keys = set(rng.sample(sorted(set(range(next_key)) - busy), 2)) | {next_key}
            next_key += 1
            write(db, org, report, [record(k, f"w{versions}") for k in keys])
        else:
            sync.page()
    for held, _ in open_writes:
        held.commit()
    clock.advance(1)
    sync.run_to_end()
    sync.run_to_end()
    assert final_versions(db, org.id) - sync.seen() == set()
    sync.assert_no_repeats_within_a_run()


def test_imports_running_during_the_walk(db, client, auth, org_and_key, make_report):
    """Real writers on the real clock: two threads import (new objects and updates,
    chunks of one org in parallel) while the client walks; once they stop, one more
    run leaves nothing unread."""
    org, report = org_and_key[0], make_report()
    write(db, org, report, [record(n, "v0") for n in range(300)])
    outbox = recording_outbox(db)
    stop = threading.Event()
    failures: list[BaseException] = []

    def importer(worker: int) -> None:
        rng = random.Random(worker)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                keys = set(rng.sample(range(300), 40)) | {1000 * (worker + 1) + n}
                _, chunk_ids = accept_records(
                    db,
                    org,
                    report,
                    [record(k, f"t{worker}-{n}") for k in sorted(keys)],
                    chunk_size=20,
                )
                for chunk_id in chunk_ids:
                    run_chunk(outbox, PollingNotifier(), chunk_id)
        except BaseException as error:  # reported by the test thread
            failures.append(error)

    threads = [threading.Thread(target=importer, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    sync = SyncClient(client, auth, limit=25)
    try:
        for _ in range(3):
            sync.run_to_end()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    sync.run_to_end()
    sync.run_to_end()
    assert final_versions(db, org.id) - sync.seen() == set()
    sync.assert_no_repeats_within_a_run()
    assert sum(len(run) for run in sync.runs) > 300


def test_the_object_count_stays_exact_under_racing_writers(
    db, client, auth, org_and_key, make_report
):
    """Four writers race on the same new external_ids (and some of their own): each
    object is counted once, by the write that created it."""
    org, report = org_and_key[0], make_report()
    outbox = recording_outbox(db)
    barrier = threading.Barrier(4)
    failures: list[BaseException] = []

    def importer(worker: int) -> None:
        try:
            keys = list(range(200)) + [500 + worker * 10 + n for n in range(10)]
            _, chunk_ids = accept_records(
                db, org, report, [record(k, f"r{worker}") for k in keys], chunk_size=50
            )
            barrier.wait(30)
            for chunk_id in chunk_ids:
                run_chunk(outbox, PollingNotifier(), chunk_id)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=importer, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    with db.session() as session:
        counted = session.scalar(
            sa.select(ObjectCount.count).where(
                ObjectCount.org_id == org.id, ObjectCount.base_object == "vendor"
            )
        )
        rows = session.scalar(
            sa.select(sa.func.count()).select_from(TABLE).where(TABLE.c.org_id == org.id)
        )
    assert counted == rows == 240
    assert client.get("/v1/vendors", headers=auth).json["total"] == 240
