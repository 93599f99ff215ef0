"""The chunk task's retry and give-up path, as the plain function the task calls, and a
worker module that builds nothing when it is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from importer import batches
from importer.models import BatchStatus, ChunkStatus, ImportBatch, ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from worker.tasks import attempt_chunk

ROOT = Path(__file__).resolve().parents[2]


def failing_write(monkeypatch, times: int) -> list[int]:
    """Make the next ``times`` chunk writes fail as a lost database connection does."""
    calls: list[int] = []
    real = batches.write_chunk

    def write(session, chunk_id):
        calls.append(chunk_id)
        if len(calls) <= times:
            raise OperationalError("UPDATE ...", {}, Exception("server closed the connection"))
        return real(session, chunk_id)

    monkeypatch.setattr(batches, "write_chunk", write)
    return calls


def chunk(db, chunk_id):
    with db.session() as session:
        return session.get(ImportChunk, chunk_id)


def test_a_failed_attempt_is_recorded_and_retried_with_backoff(
    db, settings, org_and_key, make_report, monkeypatch
):
    _, (chunk_id,) = accept_records(db, org_and_key[0], make_report(), [vendor(1), vendor(2)])
    calls = failing_write(monkeypatch, times=2)
    outbox, notifier = recording_outbox(db, settings), PollingNotifier()

    waits = [attempt_chunk(outbox, notifier, chunk_id, retries=n, max_retries=5) for n in range(3)]

    assert waits == [1.0, 2.0, None]  # two failures, then written
    assert len(calls) == 3
    done = chunk(db, chunk_id)
    assert (done.status, done.attempts, done.last_error) == (ChunkStatus.DONE, 3, None)


def test_after_the_last_retry_the_records_fail_with_write_failed(
    db, settings, org_and_key, make_report, monkeypatch
):
    batch_id, (chunk_id,) = accept_records(
        db, org_and_key[0], make_report(), [vendor(1), vendor(2)]
    )
    failing_write(monkeypatch, times=99)
    outbox, notifier = recording_outbox(db, settings), PollingNotifier()

    assert attempt_chunk(outbox, notifier, chunk_id, retries=4, max_retries=5) == 16.0
    assert "server closed the connection" in chunk(db, chunk_id).last_error
    assert attempt_chunk(outbox, notifier, chunk_id, retries=5, max_retries=5) is None

    gave_up = chunk(db, chunk_id)
    assert gave_up.status == ChunkStatus.FAILED
    with db.session() as session:
        batch = session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()
    assert (batch.status, batch.failed_count, batch.created_count) == (BatchStatus.FAILED, 2, 0)


def test_importing_the_worker_modules_builds_nothing(tmp_path):
    """No Celery app, no broker folder, no environment read at import time: the app is
    built by the entry point (``importer worker``) or when ``worker.app.celery`` is read."""
    data = tmp_path / "var"
    code = "\n".join(
        [
            "import os",
            "import app, cli, importer.broker, importer.outbox",
            "import worker.app, worker.celery_app, worker.relay, worker.signals, worker.tasks",
            f"print(os.path.exists({str(data)!r}))",
            "print(type(worker.app.celery).__name__)",
            f"print(os.path.isdir({str(data / 'broker')!r}))",
        ]
    )
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "IMPORTER_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.split() == ["False", "Celery", "True"]
