"""Request-level failures: one envelope, the documented status and code, never a 500."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.factories import vendor


def detail(response):
    assert set(response.json) == {"detail"}
    return response.json["detail"]


@pytest.mark.parametrize(
    "headers, message_part",
    [
        ({}, "Authorization: Bearer"),
        ({"Authorization": "Basic abc"}, "Bearer ak_"),
        ({"Authorization": "Bearer "}, "Bearer ak_"),
        ({"Authorization": "Bearer ak_0000"}, "not valid"),
        ({"Authorization": "Bearer sk_live_whatever"}, "not valid"),
    ],
)
def test_missing_or_bad_keys_are_401_with_www_authenticate(client, headers, message_part):
    response = client.get("/v1/import-reports", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = detail(response)
    assert body["code"] == "invalid_api_key"
    assert message_part in body["message"]


def test_keys_are_stored_hashed(org_and_key, db):
    import sqlalchemy as sa

    from importer.models import ApiKey

    _, key = org_and_key
    with db.session() as session:
        stored = session.scalars(sa.select(ApiKey)).one()
    assert key not in (stored.key_hash, stored.key_prefix)
    assert len(stored.key_hash) == 64


def test_unknown_report_is_404(client, auth):
    response = client.post("/v1/import/nope", json={"data": [{}]}, headers=auth)
    assert response.status_code == 404
    assert detail(response)["code"] == "report_not_found"


def test_unknown_url_is_404_in_the_envelope(client, auth):
    response = client.get("/v1/nothing-here", headers=auth)
    assert response.status_code == 404
    assert detail(response)["code"] == "not_found"


def test_wrong_method_is_405_in_the_envelope(client, auth):
    response = client.put("/v1/import-reports", headers=auth)
    assert response.status_code == 405
    assert detail(response)["code"] == "method_not_allowed"


def allowed(response) -> set[str]:
    return {method.strip() for method in response.headers["Allow"].split(",")}


def test_allow_lists_only_the_methods_of_that_url(client, auth):
    """/v1/import/<slug> never matches a reserved slug, so /v1/import/batches (the batch
    list) does not take POST, and says so."""
    listed = client.options("/v1/import/batches", headers=auth)
    assert listed.status_code == 200
    assert allowed(listed) == {"GET", "HEAD", "OPTIONS"}
    assert allowed(client.options("/v1/import/vendors", headers=auth)) == {"POST", "OPTIONS"}
    posted = client.post("/v1/import/batches", json={"data": [{}]}, headers=auth)
    assert posted.status_code == 405
    assert detail(posted)["code"] == "method_not_allowed"
    assert allowed(posted) == {"GET", "HEAD", "OPTIONS"}
    assert client.post("/v1/import/batches-of-2026", json={}, headers=auth).status_code == 404


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_other_media_types_are_415(client, auth, make_report, content_type):
    make_report()
    headers = dict(auth)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/import/vendors", data=b'{"data": [{}]}', headers=headers)
    assert response.status_code == 415
    assert detail(response)["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "raw, message_part",
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "no 'data' array"),
        (b'{"data": {"a": 1}}', "must be an array"),
        (b'{"data": []}', "empty"),
        (b'{"data": [{"a": 1}, "oops"]}', "Record 1"),
        (b'{"data": [null]}', "Record 0"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "JSON object"),
        (b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (b'{"data": [{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}]}", "nested too deeply"),
    ],
)
def test_bodies_that_are_not_a_batch_are_422(client, auth, make_report, raw, message_part):
    make_report()
    response = client.post(
        "/v1/import/vendors", data=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    body = detail(response)
    assert body["code"] == "invalid_body"
    assert message_part in body["message"]


def test_too_many_records_is_413_with_its_own_code(client, auth, make_report, app):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(max_records=3)
    make_report()
    response = client.post(
        "/v1/import/vendors", json={"data": [vendor(n) for n in range(4)]}, headers=auth
    )
    assert response.status_code == 413
    body = detail(response)
    assert body["code"] == "too_many_records"
    assert "more than 3 records" in body["message"]


def test_a_body_over_the_size_limit_is_413(client, auth, make_report, app):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    make_report()
    records = [vendor(n, Description="x" * 100) for n in range(40)]
    response = client.post("/v1/import/vendors", json={"data": records}, headers=auth)
    assert response.status_code == 413
    assert detail(response)["code"] == "payload_too_large"


def test_nothing_is_accepted_when_the_broker_is_down(client, auth, make_report, app, db):
    import sqlalchemy as sa

    from importer.models import ImportBatch

    def broker_down():
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    app.extensions["importer"].check_broker = broker_down
    make_report()
    response = client.post("/v1/import/vendors", json={"data": [vendor(1)]}, headers=auth)
    assert response.status_code == 503
    assert detail(response)["code"] == "unavailable"
    assert response.headers["Retry-After"]
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportBatch)) == 0
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["broker"].startswith("unavailable")


def test_a_database_outage_is_503_not_500(client, auth, app):
    from importer.db import Database

    app.extensions["importer"].db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    response = client.get("/v1/import-reports", headers=auth)
    assert response.status_code == 503
    assert detail(response)["code"] == "unavailable"
    assert client.get("/readyz").status_code == 503


@pytest.mark.parametrize(
    "value",
    [
        {"nested": {"deep": [1, 2, {"x": None}]}},
        [[["a"]]],
        2**64,
        -1e308,
        "\x00",
        "a\x00b",
        "😀" * 300,
        True,
        "",
        None,
    ],
)
def test_hostile_values_fail_the_record_not_the_request(client, auth, make_report, value):
    make_report()
    fields = [
        "Supplier ID",
        "Supplier Name",
        "Website",
        "Status",
        "Tags",
        "Enterprise",
        "IRQ Score",
        "Next Assessment",
        "Contact Email",
    ]
    records = [
        {"Supplier ID": f"H-{i}", "Supplier Name": "ok", name: value}
        for i, name in enumerate(fields)
    ]
    response = client.post(
        "/v1/import/vendors",
        data=json.dumps({"data": records}),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400)
    body = response.json
    assert body["received_count"] == len(records)
    assert body["created_count"] + body["updated_count"] + body["failed_count"] == len(records)
    failed = {e["index"] for e in body["errors"]}
    assert len(failed) == body["failed_count"]


def test_gzip_without_support_is_not_a_500(client, auth, make_report):
    make_report()
    raw = gzip.compress(b'{"data": [{"Supplier ID": "1", "Supplier Name": "x"}]}')
    response = client.post(
        "/v1/import/vendors",
        data=raw,
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code < 500


@pytest.mark.parametrize(
    "raw, message_part",
    [
        (b'{"data": [{"a": 1}, 7]}', "Record 1 of 'data' is a number"),
        (b'{"data": [{"a": 1}, {"a": 1}', "not valid JSON"),
    ],
)
def test_large_batches_read_record_by_record_refuse_the_same_bodies(
    client, auth, make_report, app, db, raw, message_part
):
    """A batch over the synchronous limit is split into records without being parsed
    whole; a record that is not valid JSON (or not an object) still fails the request,
    naming it. (Valid JSON holding a value nothing can read fails only its record:
    tests/app/test_formats.py.)"""
    import sqlalchemy as sa

    from importer.models import ImportBatch

    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_max_records=1)
    make_report()
    response = client.post(
        "/v1/import/vendors", data=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert message_part in detail(response)["message"]
    with db.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ImportBatch)) == 0


def test_large_batches_with_hostile_values_complete(client, auth, make_report, app):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_max_records=1, chunk_size=2)
    make_report()
    records = [
        {"Supplier ID": "H-1", "Supplier Name": {"nested": [1, {"x": None}]}},
        {"Supplier ID": "H-2", "Supplier Name": "ok", "IRQ Score": 2**64, "Tags": [[["a"]]]},
        {"Supplier ID": "H-3", "Supplier Name": "a\x00b"},
        {"Supplier ID": "H-4", "Supplier Name": "ok", "Extra": "😀" * 100},
    ]
    response = client.post(
        "/v1/import/vendors",
        data=json.dumps({"data": records}),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 202
    done = client.get(response.headers["Location"], headers=auth).json
    assert (done["status"], done["created_count"], done["failed_count"]) == ("completed", 1, 3)
    assert sorted({e["index"] for e in done["errors"]}) == [0, 1, 2]
    assert [w["field"] for w in done["warnings"]] == ["Extra"]
