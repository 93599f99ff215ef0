"""Private PostgreSQL and Redis servers that a fault test may stop and start at will,
without touching the machine's own (which the rest of the suite uses).

Each is started from this machine's binaries on a free loopback port and observed
through its own output: "ready to accept connections" means ready.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.integration.stack import Process, free_port


class PrivateRedis:
    """A redis-server without persistence: a restart loses every queue, as in production
    with ``--save "" --appendonly no``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = Process(
            "redis",
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            os.environ,
        )
        self.process.wait_for(r"Ready to accept connections")

    def kill(self) -> None:
        """SIGKILL: the broker vanishes with everything it held."""
        if self.process is not None:
            self.process.kill(signal.SIGKILL)
            self.process.popen.wait(10)
            self.process.stop()
            self.process = None


class PrivatePostgres:
    """A PostgreSQL cluster of its own in a temporary folder (run as the ``postgres``
    user when the tests run as root, since PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp folder: the postgres user must be able to reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="importer-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.process: Process | None = None
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self.process = Process(
            "postgres",
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.folder}",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ],
            os.environ,
        )
        self.process.wait_for(r"database system is ready to accept connections")

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as when the server goes down."""
        if self.process is not None:
            self.process.kill(signal.SIGINT)
            self.process.wait_for(r"database system is shut down")
            self.process.stop()
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
