"""An org's several API keys at the door: rotation without downtime, a revoked key
refused within the documented time, ``last_used_at`` written at most once a minute.

Time is moved, never waited for: ``clock`` moves both clocks of ``app.auth`` (the
monotonic one of its key cache, the wall clock of ``last_used_at``)."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from app import auth
from importer import orgs
from importer.db import utcnow
from importer.models import ApiKey


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        monotonic_start, wall_start = time.monotonic(), utcnow()
        monkeypatch.setattr(auth, "_monotonic", lambda: monotonic_start + self.offset)
        monkeypatch.setattr(auth, "utcnow", lambda: wall_start + self.elapsed)

    @property
    def elapsed(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


@pytest.fixture
def key_writes(db):
    """The UPDATEs of ``api_keys`` the app makes (its database is this one)."""
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    yield statements
    event.remove(db.engine, "before_cursor_execute", seen)


def bearer(api_key):
    return {"Authorization": f"Bearer {api_key}"}


def status(client, api_key):
    return client.get("/v1/import-reports", headers=bearer(api_key)).status_code


def new_key(db, org, name=None):
    with db.session() as session:
        return orgs.issue_key(session, session.merge(org), name).api_key


def revoke(db, api_key):
    with db.session() as session:
        (key,) = orgs.keys_named_by(session, api_key)
        assert orgs.revoke_key(session, key)


def stored(db, api_key):
    with db.session() as session:
        return session.scalars(
            sa.select(ApiKey).where(ApiKey.key_hash == orgs.hash_key(api_key))
        ).one()


def test_rotation_needs_no_downtime(client, db, org_and_key, clock):
    org, old_key = org_and_key
    assert status(client, old_key) == 200

    fresh_key = new_key(db, org, name="rotated")
    # Both work while the client switches; both see the same org's data.
    assert [status(client, key) for key in (old_key, fresh_key, old_key)] == [200, 200, 200]
    created = client.post(
        "/v1/import-reports",
        json={
            "slug": "v",
            "report_name": "V",
            "base_object": "vendor",
            "mapping": {"external_id": "ID", "name": "Name"},
        },
        headers=bearer(fresh_key),
    )
    assert created.status_code == 201, created.json
    assert client.get("/v1/import-reports/v", headers=bearer(old_key)).status_code == 200

    revoke(db, old_key)
    clock.advance(orgs.REVOCATION_SECONDS)

    refused = client.get("/v1/import-reports", headers=bearer(old_key))
    assert refused.status_code == 401
    assert refused.json["detail"]["code"] == "invalid_api_key"
    assert status(client, fresh_key) == 200


def test_a_revoked_key_stops_working_within_the_documented_time(client, db, org_and_key, clock):
    org, api_key = org_and_key
    assert status(client, api_key) == 200  # this process now trusts it for 10 s

    revoke(db, api_key)

    clock.advance(orgs.REVOCATION_SECONDS - 0.5)
    assert status(client, api_key) == 200  # still within the documented time
    clock.advance(0.5)
    assert status(client, api_key) == 401


def test_a_revoked_key_this_process_has_not_seen_is_refused_at_once(client, db, org_and_key):
    org, _ = org_and_key
    spare = new_key(db, org)
    revoke(db, spare)
    assert status(client, spare) == 401


def test_last_used_at_is_written_at_most_once_a_minute(client, db, org_and_key, clock, key_writes):
    org, api_key = org_and_key
    other_key = new_key(db, org)
    assert stored(db, api_key).last_used_at is None

    for _ in range(20):
        assert status(client, api_key) == 200
    assert len(key_writes) == 1
    first_use = stored(db, api_key).last_used_at
    assert abs(first_use - utcnow()) < dt.timedelta(seconds=5)

    clock.advance(59)
    for _ in range(5):
        assert status(client, api_key) == 200
    assert len(key_writes) == 1 and stored(db, api_key).last_used_at == first_use

    assert status(client, other_key) == 200  # another key is its own
    assert len(key_writes) == 2 and stored(db, other_key).last_used_at is not None

    clock.advance(1)
    assert status(client, api_key) == 200
    assert len(key_writes) == 3
    assert stored(db, api_key).last_used_at == first_use + dt.timedelta(seconds=60)


def test_another_process_does_not_write_it_again_within_the_minute(db, org_and_key):
    """Each web process throttles its own writes; the UPDATE's condition keeps the
    column to one write a minute whichever process writes."""
    org, api_key = org_and_key
    key_id = stored(db, api_key).id
    start = utcnow()
    minute = dt.timedelta(minutes=1)
    with db.session() as session:
        assert orgs.record_key_use(session, key_id, start, minute)
    with db.session() as session:
        assert not orgs.record_key_use(session, key_id, start + dt.timedelta(seconds=30), minute)
    assert stored(db, api_key).last_used_at == start
    with db.session() as session:
        assert orgs.record_key_use(session, key_id, start + minute, minute)
    assert stored(db, api_key).last_used_at == start + minute


def test_a_failed_last_used_write_does_not_fail_the_request(
    client, org_and_key, monkeypatch, caplog
):
    _, api_key = org_and_key

    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("UPDATE api_keys", {}, Exception("database is locked"))

    monkeypatch.setattr(auth, "record_key_use", broken)
    assert status(client, api_key) == 200
    assert "could not record the use of API key" in caplog.text
