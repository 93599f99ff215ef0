"""Keeps the worker of ``importer serve`` running: ``python -m cli.supervisor``.

``importer serve`` runs gunicorn's master in its own process, and that master reaps
every child of the process (``waitpid(-1)``), so it cannot watch the worker itself.
It starts this supervisor instead, which starts the worker as its own child::

    importer serve (gunicorn master) ─┬─ gunicorn worker
                                      └─ python -m cli.supervisor ── importer worker ── pool

When the worker exits without being asked to (a crash, an out-of-memory kill), the
supervisor logs why, waits, and starts a new one. The wait starts at 1 s and doubles
with each worker that dies within a minute of its start, up to a minute, so a worker
that cannot start is retried at most once a minute instead of spinning; a worker that
ran a minute or more starts the count again. What the supervisor did is kept in
``<data_dir>/worker-supervisor.json`` (see :func:`read_state`), which ``importer
status`` shows. SIGTERM or SIGINT stops the worker (Celery's warm shutdown, forced
after :data:`STOP_GRACE_SECONDS`) and then the supervisor.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from importer import metrics
from importer.config import ConfigError, Settings
from importer.logs import configure_logging

# By name: run as `python -m cli.supervisor`, __name__ is "__main__".
log = logging.getLogger("cli.supervisor")

STATE_FILE = "worker-supervisor.json"
#: How long a stopping worker may finish its chunk before it is killed.
STOP_GRACE_SECONDS = 30.0
WORKER_COMMAND = (sys.executable, "-m", "cli", "worker")


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 1.0
    max_delay: float = 60.0
    #: A worker that ran this long was not crash-looping: the next wait is first_delay.
    stable_after: float = 60.0

    def delay(self, quick_deaths: int) -> float:
        """The wait before the next start, after ``quick_deaths`` early deaths in a row."""
        return float(min(self.first_delay * 2 ** max(quick_deaths - 1, 0), self.max_delay))


@dataclasses.dataclass
class SupervisorState:
    """What ``importer status`` shows about the supervised worker (times: Unix seconds)."""

    supervisor_pid: int
    started_at: int
    worker_pid: int | None = None
    worker_started_at: int | None = None
    #: Workers started after one died.
    restarts: int = 0
    last_death_at: int | None = None
    #: e.g. "killed by signal 9 (SIGKILL)" or "exited with code 1".
    last_death_reason: str | None = None
    #: Set while waiting to start the next worker.
    next_start_at: int | None = None
    stopped_at: int | None = None


def state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def read_state(settings: Settings) -> dict[str, Any] | None:
    """The supervisor's record with ``running`` (is its process alive), or None if
    this data dir was never served by ``importer serve``."""
    try:
        data: dict[str, Any] = orjson.loads(state_path(settings).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError):
        log.warning("cannot read %s", state_path(settings), exc_info=True)
        return None
    data["running"] = data.get("stopped_at") is None and _alive(int(data["supervisor_pid"]))
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        state_file: Path,
        *,
        policy: RestartPolicy | None = None,
        on_death: Callable[[int], None] = lambda pid: None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], bool] | None = None,
    ) -> None:
        self.command = list(command)
        self.state_file = state_file
        self.policy = policy or RestartPolicy()
        self.on_death = on_death
        self.clock = clock
        self.state = SupervisorState(supervisor_pid=os.getpid(), started_at=int(time.time()))
        self._stop = threading.Event()
        #: Waits before a restart; True when a stop came meanwhile.
        self.pause = pause or self._stop.wait
        self._worker: subprocess.Popen[bytes] | None = None

    def stop(self, *_: Any) -> None:
        """Stop the worker and then the supervisor (a signal handler)."""
        self._stop.set()
        if self._worker is not None and self._worker.poll() is None:
            self._worker.terminate()

    def run(self) -> None:
        quick_deaths = 0
        try:
            while not self._stop.is_set():
                started = self.clock()
                worker = self._start()
                returncode = self._wait(worker)
                if self._stop.is_set():
                    break
                self.on_death(worker.pid)
                lived = self.clock() - started
                quick_deaths = 1 if lived >= self.policy.stable_after else quick_deaths + 1
                delay = self.policy.delay(quick_deaths)
                reason = describe_exit(returncode)
                log.error(
                    "the worker (pid %d) died: %s, after %.0f s; restarting it in %.0f s",
                    worker.pid,
                    reason,
                    lived,
                    delay,
                )
                now = int(time.time())
                self._record(
                    worker_pid=None,
                    last_death_at=now,
                    last_death_reason=reason,
                    next_start_at=now + round(delay),
                )
                if self.pause(delay):
                    break
                self.state.restarts += 1
        finally:
            self._record(worker_pid=None, next_start_at=None, stopped_at=int(time.time()))

    def _start(self) -> subprocess.Popen[bytes]:
        self._worker = worker = subprocess.Popen(self.command)
        log.info(
            "started the worker (pid %d)%s",
            worker.pid,
            f", restart {self.state.restarts}" if self.state.restarts else "",
        )
        self._record(worker_pid=worker.pid, worker_started_at=int(time.time()), next_start_at=None)
        return worker

    def _wait(self, worker: subprocess.Popen[bytes]) -> int:
        killed = False
        stop_asked_at: float | None = None
        while True:
            try:
                # A timeout, so a stop asked meanwhile is seen; wait() still returns as
                # soon as the worker exits.
                return worker.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if self._stop.is_set() and not killed:
                stop_asked_at = stop_asked_at or self.clock()
                if self.clock() - stop_asked_at >= STOP_GRACE_SECONDS:
                    log.warning("the worker (pid %d) did not stop in time; killing it", worker.pid)
                    worker.kill()
                    killed = True

    def _record(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self.state, **changes)
        partial = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}")
        try:
            partial.write_bytes(orjson.dumps(dataclasses.asdict(self.state)))
            os.replace(partial, self.state_file)
        except OSError:
            log.warning("cannot write %s", self.state_file, exc_info=True)


def main() -> None:
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        sys.exit(str(error))
    configure_logging(settings)
    supervisor = Supervisor(
        WORKER_COMMAND,
        state_path(settings),
        on_death=lambda pid: metrics.mark_process_dead(pid, settings.metrics_path),
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.run()


if __name__ == "__main__":
    main()
