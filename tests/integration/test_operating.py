"""Operating it, with real processes: /metrics adds up what the gunicorn workers and the
Celery pool processes wrote, and JSON logs carry the ids of their request, batch and task.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import VENDOR_MAPPING, vendor
from tests.integration.factories import new_org, wait_until
from tests.integration.private_services import PrivateRedis
from tests.integration.stack import Stack, fresh_stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str) -> Samples:
    response = requests.get(f"{base_url}/metrics", timeout=30)
    response.raise_for_status()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_records_the_worker_processes_wrote(stack, api):
    """A batch over IMPORTER_SYNC_MAX_RECORDS is validated and written by the workers
    only, so every created record and this failure was counted by a Celery pool
    process; the web's /metrics shows them (the session's stack is shared: deltas)."""
    before = scrape(stack.base_url)
    slug = api.create_report("vendor", VENDOR_MAPPING)
    records = [vendor(n) for n in range(1200)]
    records[7] = {"Supplier ID": "broken"}
    response = api.post(f"/v1/import/{slug}", json={"data": records})
    assert response.status_code == 202, response.text[:300]
    done = api.wait_done(response.json()["batch_id"])
    assert (done["created_count"], done["failed_count"]) == (1199, 1)

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    def counted() -> bool:  # the worker counts right after its commit: poll for it
        samples = scrape(stack.base_url)
        return delta(samples, "importer_batch_duration_seconds_count", status="completed") >= 1

    wait_until(counted, timeout=30, what="the batch's end in /metrics", every=0.1)
    after = scrape(stack.base_url)
    assert delta(after, "importer_records_total", outcome="created") == 1199
    assert delta(after, "importer_records_total", outcome="failed") == 1
    assert delta(after, "importer_record_errors_total", error_code="missing_required_field") == 1
    assert delta(after, "importer_chunk_duration_seconds_count") >= 1
    assert delta(after, "importer_batch_duration_seconds_count", status="completed") == 1
    route = {"method": "POST", "route": "/v1/import/<slug>", "status": "202"}
    assert delta(after, "importer_http_requests_total", **route) == 1
    assert value(after, "importer_workers_live") == 1
    assert value(after, "importer_overview_up") == 1
    assert ("importer_queue_depth", (("queue", "bulk"),)) in after

    # Those counts are in the files of the worker's pool processes, not of gunicorn's.
    (web,) = [process for process in stack.processes if process.name == "web"]
    web_pids = set(re.findall(r"Booting worker with pid: (\d+)", "\n".join(web.lines)))
    worker_files = [
        str(path)
        for path in Path(stack.metrics_dir).glob("counter_*.db")
        if path.name.rsplit("-", 1)[1].removesuffix(".db") not in web_pids
    ]
    assert web_pids and worker_files
    by_workers = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in MultiProcessCollector.merge(worker_files)
        for sample in family.samples
    }
    assert value(by_workers, "importer_records_total", outcome="created") >= 1199


@pytest.fixture
def json_stack(backing_services: None, private_redis: PrivateRedis) -> Iterator[Stack]:
    """A web process and a worker (one pool process) logging JSON, on a private Redis."""
    with fresh_stack(
        private_redis.url,
        worker=1,
        web=True,
        IMPORTER_LOG_FORMAT="json",
        IMPORTER_WEB_WORKERS="1",
    ) as running:
        yield running


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    """Every line must be one JSON object."""
    found = []
    for line in lines:
        try:
            found.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return found


def test_json_logs_carry_the_request_batch_and_task_ids(json_stack):
    worker, web = json_stack.processes
    api = new_org(json_stack)
    slug = api.create_report("vendor", VENDOR_MAPPING)
    response = api.post(
        f"/v1/import/{slug}",
        json={"data": [vendor(1), vendor(2), {"Supplier ID": "V-3"}]},
        headers={"X-Request-ID": "it-req-1"},
    )
    assert response.status_code == 200, response.text[:300]
    assert response.headers["X-Request-ID"] == "it-req-1"
    batch_id = response.json()["batch_id"]

    # The worker's line for the task that wrote the chunk (Celery's own "succeeded").
    worker.wait_for(rf'"batch_id": "{batch_id}".*"task_id": "[0-9a-f-]+"', timeout=30)
    worker_lines = parsed(worker.lines)
    task_lines = [line for line in worker_lines if line.get("batch_id") == batch_id]
    assert task_lines and all(line["task_id"] for line in task_lines)
    assert any(line["logger"] == "celery.app.trace" for line in task_lines)
    assert any(line["message"].endswith(" ready.") for line in worker_lines)  # Celery's own

    web.wait_for(r'"logger": "app.access".*"request_id": "it-req-1"', timeout=30)
    web_lines = parsed(web.lines)
    (access,) = [
        line
        for line in web_lines
        if line["logger"] == "app.access" and line.get("request_id") == "it-req-1"
    ]
    assert (access["method"], access["route"], access["path"], access["status"]) == (
        "POST",
        "/v1/import/<slug>",
        f"/v1/import/{slug}",
        200,
    )
    assert (access["batch_id"], access["org_id"]) == (batch_id, api.org_id)
    assert access["duration_ms"] > 0
    accepted = [line for line in web_lines if line["message"].startswith("accepted batch")]
    assert [(line["request_id"], line["batch_id"]) for line in accepted] == [("it-req-1", batch_id)]
    assert any(line["logger"] == "gunicorn.error" for line in web_lines)  # gunicorn's own

    samples = scrape(json_stack.base_url)
    assert value(samples, "importer_workers_live") == 1
    wait_until(
        lambda: (
            value(scrape(json_stack.base_url), "importer_records_total", outcome="created") == 2
        ),
        timeout=30,
        what="the worker's count in /metrics",
        every=0.1,
    )
