"""Per-org rate limits on /v1, kept in (fake) Redis through the ``limits`` library."""

from __future__ import annotations

import sqlalchemy as sa
from fakeredis import FakeRedis
from limits.storage import RedisStorage

from app.extensions import build_services
from app.ratelimits import RateLimits, records_retry_after
from importer.models import OBJECT_TABLES, IdempotencyKey, ImportBatch
from tests.factories import limits_storage, vendor


def limit(app, redis_client, requests=0, records=0) -> RateLimits:
    limits = RateLimits(limits_storage(redis_client), requests, records)
    app.extensions["importer"].rate_limits = limits
    return limits


def post(client, key, records, **headers):
    return client.post(
        "/v1/import/vendors",
        json={"data": records},
        headers={"Authorization": f"Bearer {key}", **headers},
    )


def counts(db):
    with db.session() as session:
        return (
            session.scalar(sa.select(sa.func.count()).select_from(ImportBatch)),
            session.scalar(sa.select(sa.func.count()).select_from(OBJECT_TABLES["vendor"])),
        )


def test_off_by_default_and_always_off_without_redis(settings):
    assert settings.rate_limit_requests_per_second == 0
    assert settings.rate_limit_records_per_minute == 0
    assert RateLimits.from_settings(settings) is None
    embedded = settings.replace(rate_limit_requests_per_second=5, rate_limit_records_per_minute=9)
    assert embedded.is_embedded
    assert RateLimits.from_settings(embedded) is None
    assert build_services(embedded).rate_limits is None
    distributed = embedded.replace(redis_url="redis://127.0.0.1:6379/9")
    found = RateLimits.from_settings(distributed)
    assert isinstance(found, RateLimits) and isinstance(found.storage, RedisStorage)
    assert (found.requests.amount, found.records.amount) == (5, 9)
    assert (
        RateLimits.from_settings(
            distributed.replace(rate_limit_requests_per_second=0, rate_limit_records_per_minute=0)
        )
        is None
    )


def test_settings_come_from_the_environment(tmp_path):
    from importer.config import Settings

    settings = Settings.from_env(
        {
            "IMPORTER_DATA_DIR": str(tmp_path),
            "IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND": "20",
            "IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE": "100000",
            "IMPORTER_METRICS_DIR": str(tmp_path / "m"),
            "IMPORTER_METRICS_TOKEN": "t",
        }
    )
    assert settings.rate_limit_requests_per_second == 20
    assert settings.rate_limit_records_per_minute == 100_000
    assert settings.metrics_path == tmp_path / "m"
    assert settings.metrics_token == "t"
    assert "metrics_token='t'" not in repr(settings)
    assert Settings.from_env({"IMPORTER_DATA_DIR": str(tmp_path)}).metrics_path == (
        tmp_path / "metrics"
    )


def test_requests_over_the_per_second_limit_get_429_per_org(app, client, redis_client, make_org):
    limit(app, redis_client, requests=2)
    _, first = make_org("First")
    _, second = make_org("Second")
    headers = {"Authorization": f"Bearer {first}"}
    assert client.get("/v1/import-reports", headers=headers).status_code == 200
    assert client.get("/v1/import/batches", headers=headers).status_code == 200
    refused = client.get("/v1/import-reports", headers=headers)
    assert refused.status_code == 429
    detail = refused.json["detail"]
    assert detail["code"] == "rate_limited"
    assert "2 per second" in detail["message"]
    assert "IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND" in detail["message"]
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["X-Request-ID"]
    # The other org has its own budget, and endpoints outside /v1 have none.
    assert (
        client.get("/v1/import-reports", headers={"Authorization": f"Bearer {second}"}).status_code
        == 200
    )
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_a_bad_key_is_refused_before_any_budget_is_spent(app, client, redis_client):
    limit(app, redis_client, requests=1)
    for _ in range(3):
        assert (
            client.get("/v1/import-reports", headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
    assert redis_client.keys() == []


def test_records_over_the_per_minute_budget_get_429_and_nothing_is_accepted(
    app, client, redis_client, make_org, make_report, db
):
    limit(app, redis_client, records=5)
    org, key = make_org("Limited")
    make_report(org=org)
    assert post(client, key, [vendor(n) for n in range(3)]).status_code == 200
    before = counts(db)
    refused = post(client, key, [vendor(n) for n in range(10, 13)], **{"Idempotency-Key": "k-1"})
    assert refused.status_code == 429
    detail = refused.json["detail"]
    assert detail["code"] == "rate_limited"
    assert "5 per minute" in detail["message"] and "3" in detail["message"]
    assert "IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE" in detail["message"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 120
    assert counts(db) == before  # no batch, no vendor
    with db.session() as session:  # the idempotency key was let go: a retry is a new request
        assert session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0
    # The refused batch consumed nothing: two more records still fit.
    assert post(client, key, [vendor(20), vendor(21)]).status_code == 200
    assert post(client, key, [vendor(22)]).status_code == 429


def test_each_org_has_its_own_record_budget(app, client, redis_client, make_org, make_report):
    limit(app, redis_client, records=2)
    orgs = [make_org(name) for name in ("One", "Two")]
    for org, _ in orgs:
        make_report(org=org)
    for _, key in orgs:
        assert post(client, key, [vendor(1), vendor(2)]).status_code == 200
    for _, key in orgs:
        assert post(client, key, [vendor(3)]).status_code == 429


def test_a_batch_larger_than_the_whole_budget_is_413_and_never_retried(
    app, client, redis_client, make_org, make_report, db
):
    limit(app, redis_client, records=2)
    org, key = make_org("Small")
    make_report(org=org)
    refused = post(client, key, [vendor(1), vendor(2), vendor(3)])
    assert refused.status_code == 413
    detail = refused.json["detail"]
    assert detail["code"] == "batch_over_rate_limit"
    assert "3 records" in detail["message"] and "never" in detail["message"]
    assert "Retry-After" not in refused.headers
    assert counts(db) == (0, 0)
    # Nothing was spent: a batch that fits passes.
    assert post(client, key, [vendor(1), vendor(2)]).status_code == 200


def test_a_replayed_import_spends_no_records(app, client, redis_client, make_org, make_report):
    limit(app, redis_client, records=3)
    org, key = make_org("Replays")
    make_report(org=org)
    records = [vendor(1), vendor(2)]
    first = post(client, key, records, **{"Idempotency-Key": "same"})
    again = post(client, key, records, **{"Idempotency-Key": "same"})
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert post(client, key, [vendor(3)]).status_code == 200  # 2 + 1 <= 3


def test_dry_runs_count_against_the_record_budget(app, client, redis_client, make_org, make_report):
    limit(app, redis_client, records=2)
    org, key = make_org("Dry")
    make_report(org=org)
    response = client.post(
        "/v1/import/vendors?dry_run=true",
        json={"data": [vendor(1), vendor(2)]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
    assert post(client, key, [vendor(1)]).status_code == 429


def test_an_unreachable_redis_lets_requests_through(app, client, make_org, make_report, caplog):
    storage = RedisStorage("redis://127.0.0.1:1/0", wrap_exceptions=True, socket_connect_timeout=1)
    app.extensions["importer"].rate_limits = RateLimits(storage, 1, 1)
    org, key = make_org("Unlimited")
    make_report(org=org)
    assert post(client, key, [vendor(1)]).status_code == 200
    assert "could not check the request rate limit" in caplog.text


def test_the_budget_is_shared_by_every_web_process(app, client, make_org, make_report):
    """Two apps (two web processes) over one Redis count against one budget."""
    from app import create_app

    server = FakeRedis()
    other = create_app(app.config["SETTINGS"])
    for flask_app in (app, other):
        services = flask_app.extensions["importer"]
        services.db = app.extensions["importer"].db
        services.check_broker = lambda: None
        services.rate_limits = RateLimits(limits_storage(server), 0, 3)
    org, key = make_org("Shared")
    make_report(org=org)
    app.extensions["importer"].outbox.broker.hold = True
    assert post(client, key, [vendor(1), vendor(2)], Prefer="respond-async").status_code == 202
    refused = post(other.test_client(), key, [vendor(3), vendor(4)], Prefer="respond-async")
    assert refused.status_code == 429


def test_retry_after_is_when_the_sliding_window_has_room_for_the_batch():
    # 60 of 100 spent 10 s into this minute: 60 more fit once the count, moved to the
    # previous window 50 s from now, has decayed to 40 (20 s later).
    assert (
        records_retry_after(
            limit=100,
            cost=60,
            window=60,
            previous_count=0,
            previous_expires_in=0,
            current_count=60,
            current_expires_in=110,
        )
        == 70
    )
    # Room in this window once last minute's 80 weigh no more than 30 (of 100 - 20 - 50).
    assert (
        records_retry_after(
            limit=100,
            cost=50,
            window=60,
            previous_count=80,
            previous_expires_in=45,
            current_count=20,
            current_expires_in=105,
        )
        == 23
    )
    # Never less than a second.
    assert (
        records_retry_after(
            limit=10,
            cost=1,
            window=60,
            previous_count=0,
            previous_expires_in=0,
            current_count=9,
            current_expires_in=119.5,
        )
        == 1
    )
