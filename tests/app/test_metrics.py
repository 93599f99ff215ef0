"""GET /metrics: counters written by the web and by the task function, added up from the
multiprocess folder (each test's own, ``<tmp_path>/metrics``), and the gauges read from
the overview at scrape time."""

from __future__ import annotations

import datetime as dt
import os
import random
import string
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from importer import metrics, monitoring
from importer.db import utcnow
from importer.models import ImportBatch, ImportChunk
from importer.problems import ErrorCode
from tests.factories import recording_outbox, scrape, value, vendor
from worker.tasks import run_chunk


def post(client, auth, records, slug="vendors", **headers):
    return client.post(f"/v1/import/{slug}", json={"data": records}, headers={**auth, **headers})


def test_each_process_writes_to_the_folder_of_its_settings(app, settings):
    assert settings.metrics_path == settings.data_dir / "metrics"
    assert metrics.directory() == settings.metrics_path
    assert os.environ[metrics.ENV_VAR] == str(settings.metrics_path)


def test_records_and_errors_are_counted_once_per_batch(client, auth, make_report):
    make_report()
    records = [
        vendor(1),
        {"Supplier ID": "V-2", "Supplier Name": " ", "IRQ Score": "high"},
        vendor(3),
    ]
    assert post(client, auth, records).status_code == 200
    again = [vendor(1, **{"Supplier Name": "Renamed"}), vendor(4), vendor(4)]
    assert post(client, auth, again).status_code == 200
    samples = scrape(client)
    # Batch 1: 2 created, 1 failed (2 errors). Batch 2: 1 updated, the duplicate pair failed.
    assert value(samples, "importer_records_total", outcome="created") == 2
    assert value(samples, "importer_records_total", outcome="updated") == 1
    assert value(samples, "importer_records_total", outcome="failed") == 3
    assert value(samples, "importer_record_errors_total", error_code="missing_required_field") == 1
    assert value(samples, "importer_record_errors_total", error_code="invalid_field_value") == 1
    assert value(samples, "importer_record_errors_total", error_code="duplicate_external_id") == 2
    assert value(samples, "importer_batch_duration_seconds_count", status="completed") == 2
    assert value(samples, "importer_chunk_duration_seconds_count") == 2


def test_the_task_function_counts_what_it_wrote_in_the_same_folder(
    client, auth, make_report, worker, settings
):
    """The web counts what it decided at accept time; the rest is counted by the task
    function (here run in-process, as a Celery pool process would) after its commit."""
    make_report()
    worker.hold = True
    records = [vendor(1), vendor(2), {"Supplier ID": "V-3"}]
    response = post(client, auth, records, Prefer="respond-async")
    assert response.status_code == 202
    before = scrape(client)
    assert value(before, "importer_records_total", outcome="failed") == 1  # the web's
    assert value(before, "importer_records_total", outcome="created") == 0
    assert value(before, "importer_batch_duration_seconds_count", status="completed") == 0

    worker.run_held()
    after = scrape(client)
    assert value(after, "importer_records_total", outcome="created") == 2
    assert value(after, "importer_records_total", outcome="failed") == 1
    assert value(after, "importer_chunk_duration_seconds_count") == 1
    assert value(after, "importer_batch_duration_seconds_count", status="completed") == 1
    assert {path.name.split("_")[0] for path in settings.metrics_path.glob("*.db")} == {
        "counter",
        "gauge",  # the web's waiting requests
        "histogram",
    }


def test_a_chunk_run_twice_is_counted_once(client, auth, make_report, worker, db, app):
    make_report()
    worker.hold = True
    post(client, auth, [vendor(1), vendor(2)], Prefer="respond-async")
    chunk_ids = list(worker.held)
    worker.run_held()
    notifier = app.extensions["importer"].notifier
    for chunk_id in chunk_ids:  # a redelivery: already finished
        assert run_chunk(recording_outbox(db), notifier, chunk_id) is None
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="created") == 2
    assert value(samples, "importer_chunk_duration_seconds_count") == 1


def test_deferred_validation_is_counted_by_the_worker(client, auth, make_report, app):
    """A batch over IMPORTER_SYNC_MAX_RECORDS: the web only screens it (duplicates), the
    workers validate it; each failure is counted by whoever found it, once."""
    app.config["SETTINGS"] = app.config["SETTINGS"].replace(sync_max_records=2, chunk_size=2)
    app.extensions["importer"].settings = app.config["SETTINGS"]
    make_report()
    records = [vendor(1), vendor(1), {"Supplier ID": "V-3"}, vendor(4), vendor(5)]
    assert post(client, auth, records).status_code in (200, 202)
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="created") == 2
    assert value(samples, "importer_records_total", outcome="failed") == 3
    assert value(samples, "importer_record_errors_total", error_code="duplicate_external_id") == 2
    assert value(samples, "importer_record_errors_total", error_code="missing_required_field") == 1
    assert value(samples, "importer_chunk_duration_seconds_count") == 3


def test_a_dry_run_counts_no_records_but_its_batch(client, auth, make_report):
    make_report()
    response = client.post(
        "/v1/import/vendors?dry_run=true", json={"data": [vendor(1), {}]}, headers=auth
    )
    assert response.status_code == 200
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="created") == 0
    assert value(samples, "importer_records_total", outcome="failed") == 0
    assert value(samples, "importer_batch_duration_seconds_count", status="completed") == 1


def test_a_batch_that_fails_every_record_ends_when_accepted(client, auth, make_report):
    make_report()
    assert post(client, auth, [{"Supplier ID": "V-1"}]).status_code == 400
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="failed") == 1
    assert value(samples, "importer_batch_duration_seconds_count", status="completed") == 1
    assert value(samples, "importer_chunk_duration_seconds_count") == 0


def test_a_chunk_given_up_counts_its_records_as_write_failed(
    client, auth, make_report, worker, db, app
):
    from worker.tasks import give_up_chunk

    make_report()
    worker.hold = True
    post(client, auth, [vendor(1), vendor(2)], Prefer="respond-async")
    notifier = app.extensions["importer"].notifier
    (chunk_id,) = worker.held
    give_up_chunk(
        recording_outbox(db), notifier, chunk_id, "OperationalError: the database went away"
    )
    give_up_chunk(recording_outbox(db), notifier, chunk_id, "again")  # already failed: nothing more
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="failed") == 2
    assert value(samples, "importer_record_errors_total", error_code="write_failed") == 2
    assert value(samples, "importer_batch_duration_seconds_count", status="failed") == 1


def test_http_requests_are_counted_by_url_rule_and_status(client, auth, make_report):
    make_report()
    post(client, auth, [vendor(1)])
    client.get("/v1/import-reports/vendors", headers=auth)
    client.get("/v1/import-reports/nope", headers=auth)
    client.get("/v1/import-reports/vendors")  # no key
    client.get("/no/such/page")
    samples = scrape(client)

    def requests(method, route, status):
        return value(
            samples, "importer_http_requests_total", method=method, route=route, status=status
        )

    assert requests("POST", "/v1/import/<slug>", "200") == 1
    assert requests("GET", "/v1/import-reports/<slug>", "200") == 1
    assert requests("GET", "/v1/import-reports/<slug>", "404") == 1
    assert requests("GET", "/v1/import-reports/<slug>", "401") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert not any("vendors" in dict(labels).get("route", "") for _, labels in samples)
    count = value(
        samples,
        "importer_http_request_duration_seconds_count",
        method="GET",
        route="/v1/import-reports/<slug>",
    )
    assert count == 3


def test_a_wrong_method_keeps_its_route_and_a_made_up_method_counts_as_other(client, auth):
    client.put("/v1/import-reports", headers=auth)
    client.post("/v1/import/batches", headers=auth)
    client.open("/v1/import-reports", method="BREW", headers=auth)
    client.open("/v1/import-reports", method="PURGE", headers=auth)
    client.open("/nowhere", method="M-SEARCH", headers=auth)
    samples = scrape(client)

    def requests(method, route, status):
        return value(
            samples, "importer_http_requests_total", method=method, route=route, status=status
        )

    assert requests("PUT", "/v1/import-reports", "405") == 1
    assert requests("POST", "/v1/import/batches", "405") == 1
    assert requests("other", "/v1/import-reports", "405") == 2
    assert requests("other", "unmatched", "404") == 1
    methods = {
        dict(labels)["method"] for name, labels in samples if name == "importer_http_requests_total"
    }
    assert methods == {"PUT", "POST", "other"}


def series(client) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return set(scrape(client))


def test_junk_requests_add_no_series(client, auth):
    """500 requests with made-up methods to made-up paths, with and without a key: after
    the first of them, the number of series in /metrics does not move."""
    junk = random.Random(9)
    letters = string.ascii_uppercase

    def junk_request():
        method = "".join(junk.choices(letters, k=junk.randint(3, 12)))
        if method in metrics.STANDARD_METHODS:
            method += "X"
        path = "/" + "/".join(
            "".join(
                junk.choices(string.ascii_letters + string.digits + "-_.%", k=junk.randint(1, 12))
            )
            for _ in range(junk.randint(1, 4))
        )
        client.open(path, method=method, headers=auth if junk.random() < 0.5 else {})

    junk_request()
    client.get("/metrics")  # the scrape itself is a series too
    before = series(client)
    for _ in range(500):
        junk_request()
    after = series(client)
    assert after == before
    assert len(before) < 200


def test_every_family_is_present_at_zero_before_the_first_batch(client):
    """A fresh web process: the first scrape already lists every family the processes
    write, the ones labelled by what is known in advance at zero."""
    response = client.get("/metrics")
    families = {
        family.name: family
        for family in text_string_to_metric_families(response.get_data(as_text=True))
    }
    created = {name for name in families if name.startswith("importer_")}
    assert {
        "importer_records",
        "importer_record_errors",
        "importer_batch_duration_seconds",
        "importer_chunk_duration_seconds",
    } <= created
    samples = scrape(client)
    for outcome in ("created", "updated", "failed"):
        assert ("importer_records_total", (("outcome", outcome),)) in samples
    for code in ErrorCode:
        assert ("importer_record_errors_total", (("error_code", code.value),)) in samples
    for status in ("completed", "failed"):
        key = ("importer_batch_duration_seconds_count", (("status", status),))
        assert samples[key] == 0
    assert samples[("importer_chunk_duration_seconds_count", ())] == 0
    http = {name for name, _ in samples if name.startswith("importer_http_")}
    assert http == {  # after the first request (the scrape above)
        "importer_http_requests_total",
        "importer_http_request_duration_seconds_bucket",
        "importer_http_request_duration_seconds_count",
        "importer_http_request_duration_seconds_sum",
    }
    assert sum(value for (name, _), value in samples.items() if name.endswith("_total")) == 1


def test_gauges_come_from_the_overview(client, auth, make_report, worker, db, app):
    make_report()
    with db.session() as session:
        monitoring.beat(
            session,
            node="celery@a",
            pid=7,
            concurrency=3,
            bulk_slots=2,
            queues=["interactive", "bulk"],
            started_at=utcnow(),
        )
    worker.hold = True
    bulk = post(client, auth, [vendor(n) for n in range(3)], Prefer="respond-async")
    app.extensions["importer"].settings = app.extensions["importer"].settings.replace(
        sync_wait_seconds=0
    )
    worker.down = True  # the interactive batch's hand-over fails: the relay's to send
    interactive = post(client, auth, [vendor(9)])
    two_minutes_ago = utcnow() - dt.timedelta(seconds=120)
    with db.session() as session:  # waiting for two minutes, never handed over
        session.execute(
            sa.update(ImportChunk).values(created_at=two_minutes_ago, dispatched_at=None)
        )
        session.execute(sa.update(ImportBatch).values(received_at=two_minutes_ago))
    samples = scrape(client)
    assert value(samples, "importer_overview_up") == 1
    assert value(samples, "importer_workers_live") == 1
    assert value(samples, "importer_batches", status="queued") == 2
    assert value(samples, "importer_batches", status="completed") == 0
    for lane in ("interactive", "bulk", "webhooks"):
        assert value(samples, "importer_queue_depth", queue=lane) == 0
    assert value(samples, "importer_oldest_queued_batch_age_seconds") >= 119
    assert value(samples, "importer_relay_lag_seconds") >= 119  # the interactive chunk
    assert value(samples, "importer_bulk_backlog_chunks") == 1
    assert value(samples, "importer_bulk_backlog_records") == 3
    assert value(samples, "importer_bulk_backlog_orgs") == 1
    assert value(samples, "importer_bulk_backlog_in_flight") == 0
    assert (bulk.json["status"], interactive.status_code) == ("queued", 202)


def test_the_overview_is_read_at_most_every_two_seconds(app, client):
    loads = []
    cached = app.extensions["importer_overview"]
    assert cached.ttl == 2.0
    load = cached.load

    def counting():
        loads.append(1)
        return load()

    cached.load = counting
    scrape(client)
    scrape(client)
    assert len(loads) == 1
    cached.ttl = 0  # expired at once
    scrape(client)
    assert len(loads) == 2


def test_a_scrape_without_the_database_still_answers(app, client):
    def down():
        raise ConnectionError("database down")

    app.extensions["importer_overview"].load = down
    samples = scrape(client)
    assert value(samples, "importer_overview_up") == 0
    assert ("importer_workers_live", ()) not in samples


def test_metrics_need_no_key_unless_a_token_is_set(app, client):
    assert client.get("/metrics").status_code == 200
    app.config["SETTINGS"] = app.config["SETTINGS"].replace(metrics_token="s3cret")
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.json["detail"]["code"] == "invalid_metrics_token"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    for token in ("s3crét", "s3cret\x00"):
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        )
    scrape(client, Authorization="Bearer s3cret")


def test_samples_of_another_process_are_added_up(client, auth, make_report, settings):
    """A second process (as a Celery pool process would be) writes its own file in the
    same folder; the web's scrape adds both up."""
    make_report()
    post(client, auth, [vendor(1)])
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from importer import metrics
        from importer.config import Settings
        metrics.configure(Settings.from_env({{}}, data_dir=Path({str(settings.data_dir)!r}),
                                            metrics_dir=Path({str(settings.metrics_path)!r})))
        metrics.count_records(created=5, errors={{"invalid_field_value": 2}})
        """
    )
    env = {key: value for key, value in os.environ.items() if key != metrics.ENV_VAR}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    samples = scrape(client)
    assert value(samples, "importer_records_total", outcome="created") == 6
    assert value(samples, "importer_record_errors_total", error_code="invalid_field_value") == 2
    files = {path.name for path in settings.metrics_path.glob("counter_*.db")}
    assert len(files) == 2


# --- the folder's life cycle --------------------------------------------------------


def write_file(folder, name: str) -> None:
    (folder / name).write_bytes(b"\0" * 8)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_files_are_cleared_when_nothing_else_uses_the_folder(tmp_path):
    host = metrics.process_identifier(0).rsplit("-", 1)[0]
    dead = dead_pid()
    write_file(tmp_path, f"counter_{host}-{dead}.db")
    write_file(tmp_path, f"histogram_{host}-{dead}.db")
    write_file(tmp_path, f"counter_{host}-{os.getpid()}.db")  # this very process
    assert metrics.clear_stale_files(tmp_path) == 3
    assert not list(tmp_path.glob("*.db"))


def test_files_are_kept_while_another_process_uses_the_folder(tmp_path):
    host = metrics.process_identifier(0).rsplit("-", 1)[0]
    write_file(tmp_path, f"counter_{host}-{dead_pid()}.db")
    write_file(tmp_path, f"counter_{host}-{os.getppid()}.db")  # alive: pytest's parent
    assert metrics.clear_stale_files(tmp_path) == 0
    assert len(list(tmp_path.glob("*.db"))) == 2


def test_files_of_another_host_are_kept(tmp_path):
    """Containers sharing the folder through a volume: this one cannot tell whether
    the other's processes are alive, so it leaves everything."""
    host = metrics.process_identifier(0).rsplit("-", 1)[0]
    write_file(tmp_path, f"counter_{host}-{dead_pid()}.db")
    write_file(tmp_path, "counter_another-container-7.db")
    assert metrics.clear_stale_files(tmp_path) == 0
    assert len(list(tmp_path.glob("*.db"))) == 2


def test_file_names_carry_the_host_so_containers_never_share_one(app, settings):
    metrics.count_records(created=1)
    (written,) = settings.metrics_path.glob("counter_*.db")
    assert written.name == f"counter_{metrics.process_identifier()}.db"


@pytest.mark.parametrize("mode", ["liveall", "livesum"])
def test_a_dead_process_loses_its_live_gauges_but_keeps_its_counts(tmp_path, mode):
    pid = dead_pid()
    ident = metrics.process_identifier(pid)
    write_file(tmp_path, f"gauge_{mode}_{ident}.db")
    write_file(tmp_path, f"counter_{ident}.db")
    metrics.mark_process_dead(pid, tmp_path)
    assert [path.name for path in tmp_path.glob("*.db")] == [f"counter_{ident}.db"]


def test_a_metric_that_cannot_be_written_never_fails_an_import(
    client, auth, make_report, monkeypatch, caplog
):
    class Broken:
        def __getattr__(self, name):
            raise OSError("No space left on device")

    make_report()
    monkeypatch.setattr(metrics, "_metrics", lambda: Broken())
    response = post(client, auth, [vendor(1), {"Supplier ID": "V-2"}])
    assert response.status_code == 200
    assert response.json["created_count"] == 1
    assert "could not record metric count_records" in caplog.text
