"""Operator commands: ``importer status`` and ``importer batches list|show|retry``."""

from __future__ import annotations

import os
import re
import sys
import threading

import orjson
import pytest
from click.testing import CliRunner

from cli import main
from cli.supervisor import Supervisor, state_path
from importer import batches, monitoring
from importer.broker import QUEUES, CeleryBroker
from importer.db import utcnow
from importer.formatting import format_age, table
from importer.models import ImportChunk
from importer.notify import PollingNotifier
from tests.factories import accept_records, recording_outbox, vendor
from worker.tasks import give_up_chunk, run_chunk


def env_for(settings, **extra):
    return {
        "IMPORTER_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
        **extra,
    }


def invoke(settings, *args, **env):
    return CliRunner().invoke(main, list(args), env=env_for(settings, **env))


def accept(db, org, report, n=4, chunk_size=2):
    return accept_records(db, org, report, [vendor(i) for i in range(n)], chunk_size=chunk_size)


@pytest.fixture
def failed_batch(db, org_and_key, make_report):
    batch_id, (first, second) = accept(db, org_and_key[0], make_report())
    notifier = PollingNotifier()
    run_chunk(recording_outbox(db), notifier, first, worker="celery@a")
    with db.session() as session:
        batches.claim_chunk(session, second, "celery@b")
    give_up_chunk(
        recording_outbox(db), notifier, second, "OperationalError: the database went away"
    )
    return batch_id, second


def beat(db, node, **extra):
    with db.session() as session:
        monitoring.beat(
            session,
            node=node,
            pid=4242,
            concurrency=3,
            bulk_slots=2,
            queues=list(QUEUES),
            started_at=utcnow(),
        )


def test_status_prints_queues_workers_batches_and_the_oldest_queued_batch(
    settings, db, org_and_key, make_report
):
    beat(db, "celery@worker-1")
    queued_id, _ = accept(db, org_and_key[0], make_report())

    result = invoke(settings, "status")

    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Importer status at ")
    assert (
        "Queues\n  QUEUE        DEPTH\n  bulk             0\n  interactive      0\n"
        "  webhooks         0" in text
    )
    assert "Workers: 1 online, 0 lost, 0 stopped" in text
    assert "NODE             STATE   PID   PROCESSING  CONCURRENCY  BULK SLOTS  QUEUES" in text
    # How long ago depends on how long the command took to start: any number of seconds.
    assert re.search(
        r"celery@worker-1  online  4242           0            3           2  "
        r"bulk,interactive,webhooks  \d+s ago",
        text,
    )
    assert "Bulk lane: 2 chunk(s) (4 records) waiting in 1 org(s); 0 in flight" in text
    assert "ORG                                     NAME       WAITING CHUNKS" in text
    assert f"  {org_and_key[0].id}  Acme Risk               2                4          0" in text
    assert (
        "Batches (queued and processing now; completed and failed in the last hour)\n"
        "  STATUS      BATCHES\n  queued            1\n  processing        0"
    ) in text
    assert re.search(rf"Oldest queued batch: {queued_id}, waiting \d+s \(since ", text)
    assert f"\n  report vendors, org {org_and_key[0].id}\n" in text
    assert "Relay lag: " in text


def test_status_json_is_one_object(settings, db, org_and_key, make_report):
    beat(db, "celery@worker-1")
    queued_id, _ = accept(db, org_and_key[0], make_report())

    result = invoke(settings, "status", "--json")

    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 1
    data = orjson.loads(result.output)
    assert set(data) >= {
        "queues",
        "workers",
        "batches",
        "oldest_queued_batch",
        "relay_lag_seconds",
        "live_workers",
        "generated_at",
        "backlog",
    }
    assert data["queues"] == {"interactive": 0, "bulk": 0, "webhooks": 0}
    assert data["backlog"]["top"] == [
        {
            "org_id": org_and_key[0].id,
            "org_name": "Acme Risk",
            "chunks": 2,
            "records": 4,
            "in_flight": 0,
        }
    ]
    assert [(w["node"], w["state"]) for w in data["workers"]] == [("celery@worker-1", "online")]
    assert data["batches"]["queued"] == 1
    assert data["oldest_queued_batch"]["batch_id"] == queued_id
    assert data["live_workers"] == 1


def test_status_with_nothing_running(settings):
    result = invoke(settings, "status")
    assert result.exit_code == 0, result.output
    assert "(no worker has reported in the last 24 hours)" in result.output
    assert "Oldest queued batch: none" in result.output
    assert "Worker supervisor" not in result.output  # no `importer serve` on this data dir


def test_status_shows_the_restarts_of_the_served_worker(settings, tmp_path):
    # A stand-in worker that dies at once, then one that runs until the supervisor stops.
    started = tmp_path / "started"
    os.mkfifo(started)
    script = (
        f"import os, sys, time\n"
        f"if not os.path.exists({str(tmp_path / 'died')!r}):\n"
        f"    open({str(tmp_path / 'died')!r}, 'w').close(); sys.exit(3)\n"
        f"open({str(started)!r}, 'w').close(); time.sleep(600)\n"
    )
    supervisor = Supervisor([sys.executable, "-c", script], state_path(settings))
    running = threading.Thread(target=supervisor.run)
    running.start()
    try:
        with open(started):  # returns once the second worker runs
            pass
        text = invoke(settings, "status").output
        assert "Worker supervisor (importer serve): worker pid " in text
        assert "\n  restarts: 1\n" in text
        assert ", exited with code 3" in text.split("last worker death: ")[1]
    finally:
        supervisor.stop()
        running.join(60)
    text = invoke(settings, "status").output
    assert "Worker supervisor (importer serve): not running since " in text


def test_batches_list_filters_by_status_and_org(
    settings, db, org_and_key, make_org, make_report, failed_batch
):
    failed_id, _ = failed_batch
    other_org, _ = make_org("Other Org")
    other_report = make_report(org=other_org)
    queued_id, _ = accept(db, other_org, other_report)

    everything = invoke(settings, "batches", "list")
    assert everything.exit_code == 0, everything.output
    header, *rows = everything.output.splitlines()
    assert header.split() == [
        "BATCH",
        "ORG",
        "REPORT",
        "STATUS",
        "PROGRESS",
        "RECEIVED",
        "CREATED",
        "UPDATED",
        "FAILED",
        "AGE",
    ]
    assert [row.split()[0] for row in rows] == [queued_id, failed_id]  # newest first
    assert "Other Org" in rows[0] and "queued" in rows[0] and "0%" in rows[0]
    assert "failed" in rows[1] and "100%" in rows[1]

    failed = invoke(settings, "batches", "list", "--status", "failed", "--json")
    assert [i["batch_id"] for i in orjson.loads(failed.output)["items"]] == [failed_id]
    by_org = invoke(settings, "batches", "list", "--org", other_org.id, "--json")
    body = orjson.loads(by_org.output)
    assert [i["batch_id"] for i in body["items"]] == [queued_id]
    assert body["items"][0]["org_name"] == "Other Org"
    limited = invoke(settings, "batches", "list", "--limit", "1")
    assert limited.output.splitlines()[-1] == "(1 of 2; --limit for more)"
    bad = invoke(settings, "batches", "list", "--status", "lost")
    assert bad.exit_code == 2
    none = invoke(settings, "batches", "list", "--org", "cborg_nobody")
    assert none.output == "No batches.\n"


def test_batches_show_prints_the_batch_and_its_chunks(settings, failed_batch):
    batch_id, _ = failed_batch

    result = invoke(settings, "batches", "show", batch_id)

    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith(f"Batch {batch_id}\n")
    assert "  status        failed\n" in text
    assert "  records       4 received: 2 created, 0 updated, 2 failed\n" in text
    assert "  progress      4 / 4 (100%)\n" in text
    chunk_lines = text.split("Chunks (2)\n", 1)[1].splitlines()
    assert chunk_lines[0].split() == [
        "POS",
        "STATUS",
        "RECORDS",
        "ATTEMPTS",
        "CLAIMED",
        "BY",
        "LAST",
        "ERROR",
    ]
    assert chunk_lines[1].split() == ["0", "done", "0-1", "1", "celery@a"]
    assert chunk_lines[2].split()[:5] == ["1", "failed", "2-3", "1", "celery@b"]
    assert chunk_lines[2].endswith("OperationalError: the database went away")

    as_json = orjson.loads(invoke(settings, "batches", "show", batch_id, "--json").output)
    assert as_json["batch"]["batch_id"] == batch_id
    assert [(c["position"], c["status"], c["attempts"]) for c in as_json["chunks"]] == [
        (0, "done", 1),
        (1, "failed", 1),
    ]


def test_batches_show_of_an_unknown_batch_exits_1(settings):
    result = invoke(settings, "batches", "show", "cbbatch_nope")
    assert result.exit_code == 1
    assert "No batch 'cbbatch_nope'." in result.output


def test_retry_redrives_and_sends_at_once_then_is_a_no_op(settings, db, failed_batch):
    batch_id, failed_chunk = failed_batch

    result = invoke(settings, "batches", "retry", batch_id)

    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Batch {batch_id}: 1 failed chunk(s) (2 records) put back to pending; "
        "status failed -> processing. Sent 1 chunk(s) to the broker.\n"
    )
    # Handed to the (embedded) broker: the message is in its queue.
    assert CeleryBroker(settings).depths()["bulk"] == 1
    with db.session() as session:
        assert session.get(ImportChunk, failed_chunk).dispatched_at is not None

    again = invoke(settings, "batches", "retry", batch_id, "--json")
    assert again.exit_code == 0
    assert orjson.loads(again.output)["changed"] is False

    run_chunk(recording_outbox(db), PollingNotifier(), failed_chunk)  # the worker takes the message
    done = invoke(settings, "batches", "retry", batch_id)
    assert done.exit_code == 0
    assert done.output == (
        f"Batch {batch_id} is completed with nothing failed: nothing to re-drive.\n"
    )
    listed = orjson.loads(invoke(settings, "batches", "list", "--json").output)["items"][0]
    assert (listed["status"], listed["created_count"], listed["failed_count"]) == (
        "completed",
        4,
        0,
    )


def test_retry_leaves_the_chunks_to_the_relay_when_the_broker_is_down(settings, db, failed_batch):
    batch_id, failed_chunk = failed_batch

    result = invoke(settings, "batches", "retry", batch_id, REDIS_URL="redis://127.0.0.1:1/0")

    assert result.exit_code == 0, result.output
    assert "1 failed chunk(s) (2 records) put back to pending" in result.output
    assert "The broker could not be reached (ConnectionError:" in result.output
    assert "the relay will send the 1 chunk(s) when it is back." in result.output
    with db.session() as session:
        chunk = session.get(ImportChunk, failed_chunk)
        assert (chunk.status, chunk.dispatched_at) == ("pending", None)


def test_retry_of_an_unknown_batch_exits_1(settings):
    result = invoke(settings, "batches", "retry", "cbbatch_nope")
    assert result.exit_code == 1
    assert "No batch 'cbbatch_nope'." in result.output


def test_formatting_helpers():
    assert [format_age(s) for s in (None, 4.7, 65, 3 * 3600 + 120, 2 * 86400 + 3600)] == [
        "-",
        "4s",
        "1m 05s",
        "3h 02m",
        "2d 01h",
    ]
    assert table(["A", "NUMBER"], [["x", 1234], ["long", 5]], indent="") == (
        "A     NUMBER\nx      1,234\nlong       5"
    )


def test_the_commands_are_on_the_main_group():
    assert {"status", "batches"} <= set(main.list_commands(None))


def test_batches_list_never_counts_the_whole_history(
    settings, db, org_and_key, make_report, monkeypatch
):
    """The total is counted up to the bound (one index range), then said to be more."""
    report = make_report()
    for _ in range(4):
        accept(db, org_and_key[0], report)
    monkeypatch.setattr("importer.listing.COUNT_BOUND", 3)
    listed = invoke(settings, "batches", "list", "--limit", "2", "--json")
    assert listed.exit_code == 0, listed.output
    body = orjson.loads(listed.output)
    assert (len(body["items"]), body["total"], body["total_is_lower_bound"]) == (2, 3, True)
    text = invoke(settings, "batches", "list", "--limit", "2")
    assert text.output.splitlines()[-1] == "(2 of 3+; --limit for more)"
