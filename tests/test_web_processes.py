"""``importer web`` as processes: each deployment keeps its state (database, metrics,
gunicorn's control socket) in its own data folder, ``./var`` of the folder it was
started in, even when several run from one checkout on one host."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from gunicorn.ctl.client import ControlClient

from cli.service import control_socket
from importer.config import Settings
from tests.integration.stack import Process, free_port


def test_the_data_folder_defaults_to_var_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.data_dir == tmp_path / "var"
    assert settings.metrics_path == tmp_path / "var" / "metrics"
    assert settings.database_url == f"sqlite:///{tmp_path / 'var' / 'importer.sqlite'}"
    assert control_socket(settings, 8000) == tmp_path / "var" / "gunicorn-8000.ctl"
    monkeypatch.chdir(tmp_path.parent)  # resolved once: moving on changes nothing
    assert settings.data_dir == tmp_path / "var"


def test_no_control_socket_when_its_path_is_too_long_for_a_unix_socket(tmp_path):
    settings = Settings.from_env({"IMPORTER_DATA_DIR": str(tmp_path / ("x" * 120))})

    assert control_socket(settings, 8000) is None


@dataclass
class Deployment:
    folder: Path
    port: int
    web: Process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthz_count(self) -> float:
        """The deployment's own count of GET /healthz answered 200, from its /metrics."""
        text = requests.get(self.url + "/metrics", timeout=30).text
        pattern = (
            r'^importer_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$'
        )
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def two_deployments(tmp_path_factory) -> Iterator[tuple[Deployment, Deployment, Path]]:
    """Two `importer web` started from this checkout in two folders, with no
    IMPORTER_DATA_DIR, and a HOME of their own (where gunicorn's default control
    socket would go)."""
    home = tmp_path_factory.mktemp("home")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "XDG_RUNTIME_DIR", "PROMETHEUS_MULTIPROC_DIR")
        and not key.startswith("IMPORTER_")
    }
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", IMPORTER_WEB_WORKERS="1")
    started: list[Deployment] = []
    try:
        for name in ("first", "second"):
            folder = tmp_path_factory.mktemp(name)
            port = free_port()
            argv = [sys.executable, "-m", "cli", "web", "--host", "127.0.0.1", "--port", str(port)]
            web = Process(f"web-{name}", argv, env, cwd=folder)
            started.append(Deployment(folder, port, web))
            web.wait_for(rf"Listening at: http://127\.0\.0\.1:{port}")
            web.wait_for(r"Booting worker with pid")
        yield started[0], started[1], home
    finally:
        for deployment in started:
            deployment.web.stop()


def test_two_deployments_count_their_own_requests_in_their_own_folders(two_deployments):
    first, second, _home = two_deployments
    for _ in range(3):
        assert requests.get(first.url + "/healthz", timeout=30).status_code == 200
    assert requests.get(second.url + "/healthz", timeout=30).status_code == 200

    assert (first.healthz_count(), second.healthz_count()) == (3, 1)
    for deployment in (first, second):
        metrics = deployment.folder / "var" / "metrics"
        assert list(metrics.glob("*.db")), f"no metrics files in {metrics}"


def test_each_web_process_has_its_own_control_socket(two_deployments):
    first, second, home = two_deployments
    for deployment in (first, second):
        path = deployment.folder / "var" / f"gunicorn-{deployment.port}.ctl"
        deployment.web.wait_for(rf"Control socket listening at {re.escape(str(path))}")
        with ControlClient(str(path)) as client:
            stats = client.send_command("show stats")
        assert stats["pid"] == deployment.web.popen.pid  # this deployment's gunicorn master
    assert not (home / ".gunicorn").exists()
