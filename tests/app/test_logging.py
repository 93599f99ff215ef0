"""Log lines: one JSON object per line (or a readable line), each carrying the ids of the
request, batch and task it was written for; one access line per request."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from celery import signals

import worker.signals  # noqa: F401  (the handlers under test, as a worker's app connects them)
from importer import logs
from importer.logs import GunicornLogger
from tests.factories import vendor


@pytest.fixture
def log_lines(settings) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The root logger writing JSON lines to a buffer (as ``IMPORTER_LOG_FORMAT=json``);
    returns a function that parses what was written so far."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logs.make_handler(settings.replace(log_format="json"), stream)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    root.handlers[:], level = saved
    root.setLevel(level)
    logs.clear()


def test_every_line_of_an_import_carries_the_request_and_batch_ids(
    client, auth, make_report, org_and_key, log_lines
):
    make_report()
    response = client.post(
        "/v1/import/vendors",
        json={"data": [vendor(1)]},
        headers={**auth, "X-Request-ID": "req-42"},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "req-42"
    batch_id = response.json["batch_id"]
    lines = log_lines()
    accepted = [line for line in lines if line["message"].startswith("accepted batch")]
    assert len(accepted) == 1
    assert accepted[0]["request_id"] == "req-42"
    assert accepted[0]["batch_id"] == batch_id
    assert accepted[0]["org_id"] == org_and_key[0].id
    (access,) = [line for line in lines if line["logger"] == "app.access"]
    assert access["level"] == "INFO"
    assert (access["method"], access["route"], access["path"], access["status"]) == (
        "POST",
        "/v1/import/<slug>",
        "/v1/import/vendors",
        200,
    )
    assert access["request_id"] == "req-42"
    assert access["org_id"] == org_and_key[0].id
    assert access["batch_id"] == batch_id
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["time"]
    # Nothing of the request is left for whatever the thread logs next.
    logging.getLogger("test").info("after the request")
    last = log_lines()[-1]
    assert last["message"] == "after the request"
    assert not {"request_id", "batch_id", "org_id"} & set(last)


def test_reading_a_batch_carries_its_id(client, auth, make_report, log_lines):
    make_report()
    batch_id = client.post("/v1/import/vendors", json={"data": [vendor(1)]}, headers=auth).json[
        "batch_id"
    ]
    client.get(f"/v1/import/batches/{batch_id}/results", headers={**auth, "X-Request-ID": "r-7"})
    access = [line for line in log_lines() if line["logger"] == "app.access"][-1]
    assert access["route"] == "/v1/import/batches/<batch_id>/results"
    assert (access["request_id"], access["batch_id"]) == ("r-7", batch_id)


def test_a_request_without_a_key_is_logged_without_an_org(client, log_lines):
    response = client.get("/v1/import-reports")
    assert response.status_code == 401
    (access,) = [line for line in log_lines() if line["logger"] == "app.access"]
    assert access["status"] == 401
    assert access["request_id"] == response.headers["X-Request-ID"]
    assert "org_id" not in access


def test_a_missing_or_invalid_request_id_is_replaced_and_echoed(client):
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "a b"}).headers["X-Request-ID"] != "a b"
    assert client.get("/healthz", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == (
        "abc-1"
    )


def test_a_chunk_run_by_a_task_logs_its_task_and_batch_ids(
    client, auth, make_report, worker, log_lines
):
    """Celery's task_prerun/task_postrun signals bind and unbind the task's id; the task
    function binds the chunk's batch id."""
    make_report()
    worker.hold = True
    batch_id = client.post(
        "/v1/import/vendors",
        json={"data": [vendor(1)]},
        headers={**auth, "Prefer": "respond-async"},
    ).json["batch_id"]
    signals.task_prerun.send(sender=None, task_id="task-1", task=None, args=(), kwargs={})
    worker.run_held()
    logging.getLogger("worker.tasks").info("chunk written")
    signals.task_postrun.send(sender=None, task_id="task-1", task=None, args=(), kwargs={})
    logging.getLogger("worker.tasks").info("between tasks")
    *_, during, after = log_lines()
    assert (during["task_id"], during["batch_id"]) == ("task-1", batch_id)
    assert not {"task_id", "batch_id"} & set(after)


def test_text_lines_show_the_ids_compactly(settings):
    formatter = logs.formatter("text")
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "GET /x 200", (), None)
    assert formatter.format(record).endswith("INFO    app.access: GET /x 200")
    logs.bind(request_id="r1", batch_id="cbbatch_1")
    try:
        logs.ContextFilter().filter(record)
    finally:
        logs.clear()
    assert formatter.format(record).endswith(
        "INFO    app.access [req=r1 batch=cbbatch_1]: GET /x 200"
    )


def test_gunicorn_writes_through_the_root_handler_and_has_no_access_log(settings):
    class Config:
        loglevel = "info"

    logger = GunicornLogger(Config())
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [logs.make_handler(settings.replace(log_format="json"), stream)]
    try:
        logger.info("Booting worker with pid: %s", 42)
        logger.access(None, None, {}, None)
    finally:
        root.handlers[:] = saved
    (line,) = [orjson.loads(text) for text in stream.getvalue().splitlines()]
    assert (line["logger"], line["message"]) == ("gunicorn.error", "Booting worker with pid: 42")
    assert logger.error_log.handlers == [] and logger.error_log.propagate
    assert not logger.access_log_enabled
