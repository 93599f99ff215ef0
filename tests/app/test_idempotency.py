"""Idempotency-Key on the import call."""

from __future__ import annotations

import sqlalchemy as sa

from app import idempotency
from importer.models import ImportBatch
from tests.factories import vendor


def post(client, auth, records, key, **headers):
    return client.post(
        "/v1/import/vendors",
        json={"data": records},
        headers={**auth, "Idempotency-Key": key, **headers},
    )


def batch_count(db):
    with db.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(ImportBatch))


def test_a_repeat_returns_the_original_answer_without_importing_again(
    client, auth, make_report, db
):
    make_report()
    first = post(client, auth, [vendor(1), {"Supplier ID": "bad"}], "order-42")
    second = post(client, auth, [vendor(1), {"Supplier ID": "bad"}], "order-42")
    assert first.status_code == second.status_code == 200
    assert second.data == first.data
    assert second.headers["Idempotent-Replayed"] == "true"
    assert batch_count(db) == 1
    # The record was created once, not created then updated.
    assert second.json["results"][0]["action"] == "created"


def test_a_repeat_of_a_400_is_a_400(client, auth, make_report, db):
    make_report()
    first = post(client, auth, [{"Supplier ID": "bad"}], "k-400")
    second = post(client, auth, [{"Supplier ID": "bad"}], "k-400")
    assert first.status_code == second.status_code == 400
    assert batch_count(db) == 1


def test_the_same_key_with_another_body_is_422(client, auth, make_report, db):
    make_report()
    post(client, auth, [vendor(1)], "k-1")
    response = post(client, auth, [vendor(2)], "k-1")
    assert response.status_code == 422
    assert response.json["detail"]["code"] == "idempotency_key_reused"
    assert batch_count(db) == 1


def test_keys_are_per_org(client, auth, make_report, make_org, db):
    make_report()
    other_org, other_key = make_org("Other")
    make_report(org=other_org)
    post(client, auth, [vendor(1)], "shared")
    response = post(client, {"Authorization": f"Bearer {other_key}"}, [vendor(1)], "shared")
    assert response.status_code == 200
    assert "Idempotent-Replayed" not in response.headers
    assert batch_count(db) == 2


def test_a_repeat_while_the_first_is_being_accepted_is_409(
    client, auth, make_report, org_and_key, db
):
    make_report()
    body = client.application.json.dumps({"data": [vendor(1)]}).encode()
    request_hash = idempotency.fingerprint("vendors", b"", "application/json", body)
    # The first request has reserved the key and is still validating.
    idempotency.begin(db, org_and_key[0].id, "busy", request_hash, ttl=3600)
    response = client.post(
        "/v1/import/vendors",
        data=body,
        headers={**auth, "Idempotency-Key": "busy", "Content-Type": "application/json"},
    )
    assert response.status_code == 409
    assert response.json["detail"]["code"] == "request_in_progress"
    assert batch_count(db) == 0


def test_a_repeat_while_the_first_is_running_gets_the_batch_as_it_stands(
    client, auth, make_report, worker, db
):
    make_report()
    worker.hold = True
    first = post(client, auth, [vendor(1)], "async-1", Prefer="respond-async")
    again = post(client, auth, [vendor(1)], "async-1", Prefer="respond-async")
    assert first.status_code == again.status_code == 202
    assert again.json["batch_id"] == first.json["batch_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert batch_count(db) == 1


def test_a_request_refused_before_acceptance_frees_its_key(client, auth, make_report, app, db):
    make_report()
    services = app.extensions["importer"]
    healthy = services.check_broker

    def broker_down():
        raise ConnectionError("broker down")

    services.check_broker = broker_down
    assert post(client, auth, [vendor(1)], "retry-me").status_code == 503
    services.check_broker = healthy
    assert post(client, auth, [vendor(1)], "retry-me").status_code == 200
    assert batch_count(db) == 1


def test_an_invalid_key_is_422(client, auth, make_report):
    make_report()
    response = post(client, auth, [vendor(1)], "x" * 256)
    assert response.status_code == 422
    assert response.json["detail"]["code"] == "invalid_idempotency_key"
