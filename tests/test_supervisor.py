"""The supervisor of `importer serve`'s worker, with stand-in workers (see also test_serve)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cli.supervisor import Supervisor, read_state
from importer.config import Settings

CRASHING_WORKER = [sys.executable, "-c", "raise SystemExit(3)"]


def state_of(data_dir: Path) -> dict:
    state = read_state(Settings.from_env({"IMPORTER_DATA_DIR": str(data_dir)}))
    assert state is not None
    return state


def test_a_crash_looping_worker_is_restarted_less_and_less_often(tmp_path, caplog):
    waits: list[float] = []

    def pause(delay: float) -> bool:
        waits.append(delay)
        return len(waits) == 9  # then stop

    supervisor = Supervisor(CRASHING_WORKER, tmp_path / "worker-supervisor.json", pause=pause)
    with caplog.at_level(logging.INFO, logger="cli.supervisor"):
        supervisor.run()

    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    deaths = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(deaths) == 9
    assert all("exited with code 3" in message for message in deaths)
    assert "restarting it in 60 s" in deaths[-1]
    state = state_of(tmp_path)
    assert (state["restarts"], state["last_death_reason"]) == (8, "exited with code 3")
    assert state["running"] is False and state["stopped_at"] is not None


def test_a_worker_that_ran_a_while_is_restarted_at_once_again(tmp_path):
    # Monotonic readings at each start and death: the third worker lives 90 s.
    lifetimes = [0, 0, 90, 0]
    readings: Iterator[float] = iter(
        value for n, lived in enumerate(lifetimes) for value in (100 * n, 100 * n + lived)
    )
    waits: list[float] = []

    def pause(delay: float) -> bool:
        waits.append(delay)
        return len(waits) == len(lifetimes)

    Supervisor(
        CRASHING_WORKER,
        tmp_path / "worker-supervisor.json",
        clock=lambda: next(readings),
        pause=pause,
    ).run()
    assert waits == [1, 2, 1, 2]


def test_a_stopped_supervisor_stops_its_worker_and_does_not_restart_it(tmp_path, caplog):
    started = tmp_path / "started"
    os.mkfifo(started)
    worker = [
        sys.executable,
        "-c",
        f"import time; open({str(started)!r}, 'w').close(); time.sleep(600)",
    ]
    supervisor = Supervisor(worker, tmp_path / "worker-supervisor.json")
    with caplog.at_level(logging.INFO, logger="cli.supervisor"):
        running = threading.Thread(target=supervisor.run)
        running.start()
        with open(started):  # returns once the worker has opened the other end
            pass
        worker_pid = state_of(tmp_path)["worker_pid"]
        supervisor.stop()
        running.join(60)

    assert not running.is_alive()
    assert not any("died" in r.getMessage() for r in caplog.records)
    state = orjson.loads((tmp_path / "worker-supervisor.json").read_bytes())
    assert (state["restarts"], state["worker_pid"]) == (0, None)
    assert state["stopped_at"] is not None
    with pytest.raises(ProcessLookupError):  # the worker is gone
        os.kill(worker_pid, 0)
