"""The embedded deployment as a user meets it: ``importer serve``, then the printed curl."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from importer.broker import INTERACTIVE_QUEUE
from tests.integration.stack import Process, free_port


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL") and not key.startswith("IMPORTER_")
    }
    env.update(IMPORTER_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


def start_serve(data_dir: Path, port: int) -> Process:
    command = [sys.executable, "-m", "cli", "serve", "--port", str(port)]
    return Process("serve", command, embedded_env(data_dir))


def run_curl(curl: str) -> tuple[str, dict[str, Any]]:
    result = subprocess.run(
        [*shlex.split(curl), "--write-out", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, status = result.stdout.rsplit("\n", 1)
    return status, orjson.loads(body)


def status_json(data_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        env=embedded_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer: dict[str, Any] = orjson.loads(result.stdout)
    return answer


def test_serve_prints_a_curl_that_imports_the_sample_vendors(tmp_path):
    port = free_port()
    serve = start_serve(tmp_path, port)
    try:
        key = serve.wait_for(r"API key \(shown once, keep it\): (ak_[0-9a-f]+)").group(1)
        curl = serve.wait_for(r"^curl .*").group(0)
        serve.wait_for(r"\S+@\S+ ready\.")
        serve.wait_for(rf"Listening at: http://127\.0\.0\.1:{port}")
        assert key in curl
        status, answer = run_curl(curl)
        assert status == "200"
        assert (answer["status"], answer["created_count"], answer["failed_count"]) == (
            "completed",
            3,
            0,
        )
        assert [r["action"] for r in answer["results"]] == ["created"] * 3
    finally:
        serve.stop()
    assert (tmp_path / "importer.sqlite").exists()


def test_serve_keeps_importing_past_a_bad_message_and_a_killed_worker(tmp_path):
    port = free_port()
    serve = start_serve(tmp_path, port)
    try:
        curl = serve.wait_for(r"^curl .*").group(0)
        first_pid = serve.wait_for(r"importer-(\d+)@\S+ ready\.").group(1)
        serve.wait_for(rf"Listening at: http://127\.0\.0\.1:{port}")

        # A message file cut short (as a crash mid-write would leave it): set aside, and
        # the same worker goes on importing.
        bad_name = f"0_{uuid.uuid4()}.{INTERACTIVE_QUEUE}.msg"
        (tmp_path / "broker" / bad_name).write_bytes(b'{"body": "W1s')
        serve.wait_for(rf"{bad_name} is not JSON .*; set aside")
        status, answer = run_curl(curl)
        assert (status, answer["status"]) == ("200", "completed")
        assert (tmp_path / "broker" / "bad" / bad_name).exists()
        assert status_json(tmp_path)["worker_supervisor"]["restarts"] == 0

        # The worker killed: the supervisor says so, starts another, and imports go on.
        os.kill(int(first_pid), signal.SIGKILL)
        serve.wait_for(rf"the worker \(pid {first_pid}\) died: killed by signal 9 \(SIGKILL\)")
        second_pid = serve.wait_for(rf"importer-(?!{first_pid}@)(\d+)@\S+ ready\.").group(1)
        status, answer = run_curl(curl)
        assert (status, answer["status"]) == ("200", "completed")
        assert [r["action"] for r in answer["results"]] == ["updated"] * 3

        supervised = status_json(tmp_path)["worker_supervisor"]
        assert supervised["running"] is True
        assert supervised["worker_pid"] == int(second_pid)
        assert supervised["restarts"] == 1
        assert supervised["last_death_reason"] == "killed by signal 9 (SIGKILL)"
    finally:
        serve.stop()
