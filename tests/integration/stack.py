"""Real processes for the integration layer: ``importer web`` and ``importer worker``
started as subprocesses against this machine's PostgreSQL and Redis.

Readiness is observed, not guessed: a process is ready when it prints the line
that says so (gunicorn's "Listening at", Celery's "ready.").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
#: Where to keep the output of every process started (for a post-mortem of a failure).
LOG_DIR = os.environ.get("IMPORTER_TEST_LOG_DIR", "")
POSTGRES_ADMIN_URL = os.environ.get(
    "IMPORTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_BASE_URL = os.environ.get("IMPORTER_TEST_REDIS_URL", "redis://127.0.0.1:6379")


def create_database(admin_url: str = POSTGRES_ADMIN_URL) -> str:
    """A new, empty PostgreSQL database; returns its URL."""
    name = f"importer_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str, admin_url: str = POSTGRES_ADMIN_URL) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose merged output is collected line by line."""

    def __init__(
        self, name: str, args: list[str], env: Mapping[str, str], cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """Block until a line of output matches ``pattern``; fail if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.popen.returncode}):\n{self.tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no line matching {pattern!r}:\n{self.tail()}")
                self._changed.wait(remaining)

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the worker and its pool children)."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 30) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(10)
        self._reader.join(10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        if LOG_DIR:
            path = Path(LOG_DIR) / f"{self.name}-{self.popen.pid}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(self.lines) + "\n")


class Stack:
    """Web and worker processes sharing one database and one Redis database."""

    def __init__(self, database_url: str, redis_url: str, **settings: str) -> None:
        #: Each stack's processes write their metrics to a folder of their own, so a
        #: stack's /metrics counts only its own processes.
        self.metrics_dir = tempfile.mkdtemp(prefix="importer-metrics-")
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "IMPORTER_LOG_LEVEL": "info",
            "IMPORTER_METRICS_DIR": self.metrics_dir,
            "PYTHONUNBUFFERED": "1",
            **settings,
        }
        self.processes: list[Process] = []
        self.base_url = ""

    def _spawn(self, name: str, *args: str) -> Process:
        process = Process(name, [sys.executable, "-m", "cli", *args], self.env)
        self.processes.append(process)
        return process

    def start_worker(self, concurrency: int = 2) -> Process:
        worker = self._spawn("worker", "worker", "--concurrency", str(concurrency))
        worker.wait_for(r"\S+@\S+ ready\.")
        return worker

    def start_web(self) -> Process:
        port = free_port()
        web = self._spawn("web", "web", "--host", "127.0.0.1", "--port", str(port))
        web.wait_for(r"Booting worker with pid")
        web.wait_for(r"Listening at: http://127\.0\.0\.1:\d+")
        self.base_url = f"http://127.0.0.1:{port}"
        return web

    def run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return result.stdout

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


class Api:
    """A client of the running web process, as an integration would hold it."""

    def __init__(self, base_url: str, api_key: str, org_id: str = "") -> None:
        self.base_url = base_url
        self.org_id = org_id
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def create_report(
        self, base_object: str, mapping: dict[str, str], slug: str | None = None
    ) -> str:
        slug = slug or f"{base_object}-{uuid.uuid4().hex[:8]}"
        response = self.post(
            "/v1/import-reports",
            json={
                "slug": slug,
                "report_name": slug,
                "base_object": base_object,
                "mapping": mapping,
            },
        )
        response.raise_for_status()
        return slug

    def wait_done(self, batch_id: str, timeout: float = 300) -> dict[str, Any]:
        """Long-poll the batch until it is completed or failed."""
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = self.get(f"/v1/import/batches/{batch_id}?wait=20").json()
            if body["status"] in ("completed", "failed"):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {body['status']}: {body['progress']}")


@contextmanager
def fresh_stack(
    redis_url: str, *, worker: int | None = None, web: bool = False, **settings: str
) -> Iterator[Stack]:
    """A stack on a new, migrated database (dropped afterwards); with ``worker`` (its
    pool's process count) and ``web``, those processes started and ready."""
    database_url = create_database()
    stack = Stack(database_url, redis_url, **settings)
    try:
        stack.run("db", "upgrade")
        if worker:
            stack.start_worker(concurrency=worker)
        if web:
            stack.start_web()
        yield stack
    finally:
        stack.stop()
        drop_database(database_url)
