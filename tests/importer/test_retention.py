"""Retention: the clock moves, and each kind of bookkeeping goes when its time comes,
and nothing else does. Objects are never purged."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from cli import main
from importer import retention
from importer.db import utcnow
from importer.models import (
    OBJECT_TABLES,
    DeliveryStatus,
    IdempotencyKey,
    ImportBatch,
    ImportChunk,
    WebhookDelivery,
)
from tests.factories import scrape, value, vendor


def post(client, auth, records, **headers):
    return client.post("/v1/import/vendors", json={"data": records}, headers={**auth, **headers})


def snapshot(db):
    """What is stored, kind by kind."""
    with db.session() as session:
        batches = {
            batch_id: purged is not None
            for batch_id, purged in session.execute(
                sa.select(ImportBatch.id, ImportBatch.details_purged_at)
            )
        }
        chunks = dict(
            session.execute(
                sa.select(ImportChunk.batch_id, sa.func.count()).group_by(ImportChunk.batch_id)
            ).all()
        )
        return {
            "batches": batches,
            "chunks": chunks,
            "keys": set(session.scalars(sa.select(IdempotencyKey.key))),
            "deliveries": dict(
                session.execute(sa.select(WebhookDelivery.id, WebhookDelivery.status)).all()
            ),
            "vendors": session.scalar(
                sa.select(sa.func.count()).select_from(OBJECT_TABLES["vendor"])
            ),
        }


@pytest.fixture
def world(app, client, auth, make_report, worker, db):
    """Two finished batches (one of them with an idempotency key), a batch still queued,
    a delivered and a pending webhook delivery; retention: details 30 days, summaries
    365, deliveries 20, keys 24 hours."""
    services = app.extensions["importer"]
    services.settings = services.settings.replace(webhook_delivery_retention_days=20)
    make_report()
    hook = {"url": "https://example.com/h", "events": ["Import.Completed"], "secret": "s" * 20}
    assert client.post("/v1/webhooks", json=hook, headers=auth).status_code == 201
    done = post(
        client, auth, [vendor(1), vendor(2), {"Supplier ID": "x"}], **{"Idempotency-Key": "k1"}
    )
    other = post(client, auth, [vendor(3)])
    worker.hold = True
    queued = post(client, auth, [vendor(4)], Prefer="respond-async")
    with db.session() as session:
        first, second = session.scalars(
            sa.select(WebhookDelivery.id).order_by(WebhookDelivery.created_at)
        )
        session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id == first)
            .values(status=DeliveryStatus.DELIVERED, next_attempt_at=None)
        )
    return {
        "settings": services.settings,
        "done": done.json["batch_id"],
        "other": other.json["batch_id"],
        "queued": queued.json["batch_id"],
        "delivered": first,
        "pending": second,
        "start": utcnow(),
    }


def test_each_kind_goes_when_its_time_comes_and_nothing_else(world, db, client, auth):
    settings, start = world["settings"], world["start"]
    done, other, queued = world["done"], world["other"], world["queued"]
    before = snapshot(db)
    assert set(before["batches"]) == {done, other, queued}
    assert before["keys"] == {"k1"} and before["vendors"] == 3

    def purge_at(days: float) -> tuple[retention.Purged, dict]:
        purged = retention.purge(db, settings, now=start + dt.timedelta(days=days))
        assert purged.complete
        return purged, snapshot(db)

    purged, now = purge_at(0.9)
    assert purged.rows() == dict.fromkeys(retention.TABLES, 0) and now == before

    purged, now = purge_at(1.1)  # the idempotency key's 24 hours are over
    assert purged.idempotency_keys == 1 and now == {**before, "keys": set()}

    purged, now = purge_at(21)  # the delivered webhook's 20 days; the pending one is live
    assert purged.webhook_deliveries == 1
    assert now["deliveries"] == {world["pending"]: DeliveryStatus.PENDING}
    assert now["batches"] == before["batches"] and now["chunks"] == before["chunks"]

    purged, now = purge_at(31)  # the finished batches' details; their summaries stay
    assert (purged.batches_details, purged.import_chunks) == (2, 2)
    assert now["batches"] == {done: True, other: True, queued: False}
    assert now["chunks"] == {queued: 1}
    assert now["vendors"] == 3

    # A read of purged details is a 410; the summary is still there.
    for kind in ("results", "errors", "warnings"):
        gone = client.get(f"/v1/import/batches/{done}/{kind}", headers=auth)
        assert (gone.status_code, gone.json["detail"]["code"]) == (410, "batch_details_expired")
        assert f"/v1/import/batches/{done}" in gone.json["detail"]["message"]
    summary = client.get(f"/v1/import/batches/{done}", headers=auth)
    assert summary.status_code == 200
    assert (summary.json["created_count"], summary.json["failed_count"]) == (2, 1)
    assert (summary.json["results_total"], summary.json["errors_total"]) == (2, 1)
    assert summary.json["results"] == summary.json["errors"] == []
    assert summary.json["details_purged_at"] == int((start + dt.timedelta(days=31)).timestamp())
    listed = client.get("/v1/import/batches", headers=auth).json["items"]
    assert {item["batch_id"] for item in listed} == {done, other, queued}
    kept = client.get(f"/v1/import/batches/{queued}/results", headers=auth)
    assert kept.status_code == 200

    purged, now = purge_at(366)  # the summaries' year; the queued batch is live work
    assert (purged.import_batches, purged.import_chunks) == (2, 0)
    assert now["batches"] == {queued: False} and now["chunks"] == {queued: 1}
    assert now["vendors"] == 3
    assert client.get(f"/v1/import/batches/{done}", headers=auth).status_code == 404

    purged, again = purge_at(1000)  # nothing more, ever: objects are never purged
    assert purged.rows() == dict.fromkeys(retention.TABLES, 0) and again == now


def test_metrics_count_the_rows_purged_from_zero(world, db, client):
    samples = scrape(client)
    for table in retention.TABLES:
        assert ("importer_purged_rows_total", (("table", table),)) in samples
        assert value(samples, "importer_purged_rows_total", table=table) == 0
    retention.purge(db, world["settings"], now=world["start"] + dt.timedelta(days=400))
    samples = scrape(client)
    assert value(samples, "importer_purged_rows_total", table="import_chunks") == 2
    assert value(samples, "importer_purged_rows_total", table="import_batches") == 2
    assert value(samples, "importer_purged_rows_total", table="idempotency_keys") == 1
    assert value(samples, "importer_purged_rows_total", table="webhook_deliveries") == 1


def test_a_run_out_of_time_leaves_the_rest_to_the_next(world, db):
    ticks = iter(range(100))
    purged = retention.purge(
        db,
        world["settings"],
        now=world["start"] + dt.timedelta(days=400),
        budget_seconds=0.5,
        clock=lambda: next(ticks),
    )
    assert not purged.complete
    assert purged.batches_details == 2 and purged.import_batches == 0
    rest = retention.purge(db, world["settings"], now=world["start"] + dt.timedelta(days=400))
    assert rest.complete and rest.import_batches == 2 and rest.idempotency_keys == 1


def test_the_deployment_purges_at_most_once_per_interval(db, settings):
    """Workers race for a run: one wins per interval, whichever asks."""
    start = utcnow()
    with db.session() as session:
        assert retention.claim_run(session, settings, now=start)
    with db.session() as session:
        assert not retention.claim_run(session, settings, now=start + dt.timedelta(seconds=30))
    with db.session() as session:
        assert retention.claim_run(session, settings, now=start + dt.timedelta(seconds=61))


def test_a_worker_asks_at_most_once_per_interval(db, settings, monkeypatch):
    """The timer ticks every 2 s; the purge is tried once a minute, and a worker whose
    turn it is not does not purge."""
    runs = []
    monkeypatch.setattr(retention, "purge", lambda *a, **k: runs.append(1) or retention.Purged())
    now = [0.0]
    first = retention.Purger(db, settings, clock=lambda: now[0])
    second = retention.Purger(db, settings, clock=lambda: now[0])
    assert first.maybe_run() is not None
    assert second.maybe_run() is None  # the deployment's run for this minute is taken
    now[0] = 2.0
    assert first.maybe_run() is None and runs == [1]
    with db.session() as session:
        # The minute passes for the database too.
        session.execute(sa.text("UPDATE purge_state SET next_run_at = '2000-01-01 00:00:00'"))
    assert first.maybe_run() is None  # this worker waits out its own minute first
    assert second.maybe_run() is None
    now[0] = 61.0
    assert first.maybe_run() is not None and runs == [1, 1]


def test_importer_purge_dry_run_counts_and_deletes_nothing(world, db, monkeypatch):
    settings = world["settings"]
    env = {
        "IMPORTER_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": "",
        "IMPORTER_BATCH_DETAIL_RETENTION_DAYS": "1",
        "IMPORTER_WEBHOOK_DELIVERY_RETENTION_DAYS": "1",
    }
    later = world["start"] + dt.timedelta(days=2)
    monkeypatch.setattr("cli.purge.utcnow", lambda: later)
    monkeypatch.setattr("importer.retention.utcnow", lambda: later)
    before = snapshot(db)
    dry = CliRunner().invoke(main, ["purge", "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    counted = orjson.loads(dry.output)
    assert counted["dry_run"] is True
    assert (counted["batches_details"], counted["import_chunks"]) == (2, 2)
    assert (counted["idempotency_keys"], counted["webhook_deliveries"]) == (1, 1)
    assert counted["import_batches"] == 0
    assert snapshot(db) == before
    done = CliRunner().invoke(main, ["purge"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.startswith("Deleted 2 chunk(s) of per-record details of 2 finished")
    after = snapshot(db)
    assert after["chunks"] == {world["queued"]: 1} and after["keys"] == set()
    assert after["vendors"] == before["vendors"]
