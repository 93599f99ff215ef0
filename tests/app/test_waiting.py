"""Waiting slots: at most IMPORTER_SYNC_WAITERS requests of a web process wait for a
batch; the others are answered at once, and nothing else ever waits behind them.

The waiters here are held on an event (a notifier that blocks until the test lets
it go), so every slot is provably taken while the other requests are made."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from app.waiting import WaitingSlots
from importer.config import ConfigError, Settings
from tests.factories import scrape, value, vendor

SLOTS = 2


class HeldNotifier:
    """A notifier whose waits block until ``release`` is set; ``entered`` counts them."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.waits = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def publish_done(self, batch_id: str) -> None:
        pass

    def _wait(self) -> bool:
        with self._lock:
            self.waits += 1
        self.entered.release()
        # A guard against a hung test, not a timing: the test sets ``release``.
        self.release.wait(60)
        return False

    @contextmanager
    def watch(self, batch_id: str) -> Iterator[Any]:
        notifier = self

        class Held:
            def wait(self, timeout: float, is_done: Callable[[], bool], look_first=True) -> bool:
                return notifier._wait()

        yield Held()

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool:
        return self._wait()


@pytest.fixture
def held(app: Flask, worker) -> Iterator[HeldNotifier]:
    services = app.extensions["importer"]
    services.waiting = WaitingSlots(SLOTS)
    notifier = HeldNotifier()
    services.notifier = notifier
    worker.hold = True  # no batch finishes while the test holds the waiters
    yield notifier
    notifier.release.set()


def post(app: Flask, auth: dict[str, str], n: int, **headers: str) -> Any:
    return app.test_client().post(
        "/v1/import/vendors", json={"data": [vendor(n)]}, headers={**auth, **headers}
    )


def test_every_slot_taken_still_serves_health_metrics_and_answers_at_once(
    app, client, auth, make_report, held
):
    make_report()
    with ThreadPoolExecutor(SLOTS) as pool:
        waiting = [pool.submit(post, app, auth, n) for n in range(SLOTS)]
        for _ in range(SLOTS):
            assert held.entered.acquire(timeout=30), "a synchronous import never waited"

        # Every slot is taken, and its request still waiting:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        metrics = scrape(client)
        assert value(metrics, "importer_waiting_requests") == SLOTS

        # A synchronous import beyond the slots is accepted and answered at once.
        beyond = post(app, auth, 99)
        assert beyond.status_code == 202
        assert beyond.headers["Location"] == f"/v1/import/batches/{beyond.json['batch_id']}"
        assert beyond.headers["Retry-After"] == "1"
        assert beyond.json["status"] == "queued"
        # So is a long-poll of its batch: the batch as it stands, and when to ask again.
        polled = client.get(f"{beyond.headers['Location']}?wait=5", headers=auth)
        assert polled.status_code == 200
        assert polled.json["status"] == "queued"
        assert polled.headers["Retry-After"] == "1"
        assert held.waits == SLOTS  # neither of them waited
        assert not any(future.done() for future in waiting)
        assert value(scrape(client), "importer_waits_declined_total") == 2

        held.release.set()
        answers = [future.result() for future in waiting]
    assert [answer.status_code for answer in answers] == [202, 202]  # their waits ran out
    assert value(scrape(client), "importer_waiting_requests") == 0


def test_a_freed_slot_is_waited_in_again(app, auth, make_report, held, worker):
    make_report()
    held.release.set()  # waits end at once (as if they timed out)
    for n in range(SLOTS + 1):  # one after another: each returns its slot
        assert post(app, auth, n).status_code == 202
    assert held.waits == SLOTS + 1


def test_without_a_slot_only_a_running_batch_says_retry_after(
    app, client, auth, make_report, worker
):
    make_report()
    app.extensions["importer"].waiting = WaitingSlots(0)  # this process never waits
    invalid = app.test_client().post(
        "/v1/import/vendors", json={"data": [{"Supplier ID": "x"}]}, headers=auth
    )
    assert invalid.status_code == 400  # done at accept: nothing to wait for
    assert "Retry-After" not in invalid.headers

    worker.hold = True
    queued = post(app, auth, 1)
    assert (queued.status_code, queued.headers["Retry-After"]) == (202, "1")
    worker.run_held()
    done = client.get(f"{queued.headers['Location']}?wait=5", headers=auth)
    assert done.json["status"] == "completed"
    assert "Retry-After" not in done.headers


def test_waiters_must_leave_threads_for_the_rest():
    assert Settings.from_env({}).waiting_slots == 6  # 8 threads, 2 never wait
    assert Settings.from_env({"IMPORTER_WEB_THREADS": "16"}).waiting_slots == 14
    assert Settings.from_env({"IMPORTER_WEB_THREADS": "1"}).waiting_slots == 0
    assert Settings.from_env({"IMPORTER_SYNC_WAITERS": "0"}).waiting_slots == 0
    with pytest.raises(ConfigError, match="less than IMPORTER_WEB_THREADS"):
        Settings.from_env({"IMPORTER_SYNC_WAITERS": "8"})
