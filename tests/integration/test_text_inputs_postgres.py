"""Text PostgreSQL cannot hold, sent everywhere a request carries text, on PostgreSQL:
never a 500. A NUL character (or a lone surrogate) in a path or query parameter is
``422 invalid_parameter``, in a JSON body ``422 invalid_body``, in an import record a
problem of that record only; a number too large to read fails only its record too.

The app runs in-process over this machine's PostgreSQL (the worker's task function is
called inline), so every request shape is one quick call."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from importer.config import Settings
from importer.db import Database
from importer.models import ImportBatch
from importer.notify import PollingNotifier
from importer.orgs import create_org
from tests.factories import FLASK_ARGUMENT, MAPPINGS, InlineBroker, vendor

NUL = "a\x00b"
OPS_TOKEN = "ops-token-for-the-nul-tests"


@pytest.fixture
def pg_app(pg: Database, pg_database_url: str, tmp_path) -> Iterator[Flask]:
    settings = Settings.from_env(
        {"IMPORTER_DATA_DIR": str(tmp_path), "DATABASE_URL": pg_database_url},
        sync_wait_seconds=5.0,
        ops_token=OPS_TOKEN,
    )
    flask_app = create_app(settings)
    services = flask_app.extensions["importer"]
    services.db.dispose()
    services.db = pg
    services.notifier = PollingNotifier()
    services.outbox = InlineBroker(settings, pg, services.notifier).outbox
    yield flask_app


@pytest.fixture
def client(pg_app: Flask) -> FlaskClient:
    return pg_app.test_client()


_orgs = itertools.count()


@pytest.fixture
def auth(pg: Database, client: FlaskClient) -> dict[str, str]:
    """A new org with one report per base object (slugs ``vendors``, ``services``...)."""
    with pg.session() as session:
        _, key = create_org(session, f"nul-{next(_orgs)}")
    headers = {"Authorization": f"Bearer {key}"}
    for base_object, mapping in MAPPINGS.items():
        created = client.post(
            "/v1/import-reports",
            json={
                "slug": f"{base_object}s",
                "report_name": base_object,
                "base_object": base_object,
                "mapping": mapping,
            },
            headers=headers,
        )
        assert created.status_code == 201, created.json
    return headers


def refused(response: Any, code: str) -> str:
    assert response.status_code == 422, response.get_data(as_text=True)
    detail = response.json["detail"]
    assert detail["code"] == code
    return str(detail["message"])


def _open(client: FlaskClient, method: str, url: str, auth: dict[str, str], **kwargs: Any) -> Any:
    headers = {**auth, "X-Requested-With": "test"}  # the ops page's same-origin check
    if url.startswith("/ops"):
        headers["Authorization"] = f"Bearer {OPS_TOKEN}"
    return client.open(url, method=method, headers=headers, **kwargs)


def test_a_nul_in_any_path_parameter_is_422(pg_app, client, auth):
    """Every URL rule of the app with a parameter, every method, NUL in each parameter
    in turn (the others real-looking): GET /v1/vendors/cbvndr_%00, a batch or webhook
    id with %00, /v1/import-reports/a%00b, POST /v1/import/a%00b, the ops page's retry."""
    checked = []
    for rule in pg_app.url_map.iter_rules():
        for argument in sorted(rule.arguments):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                values = {name: "x" for name in rule.arguments}
                values[argument] = f"{'cbvndr_' if 'object' in argument else ''}{NUL}"
                url = FLASK_ARGUMENT.sub(lambda m, v=values: quote(v[m[1]], safe=""), rule.rule)
                response = _open(client, method, url, auth, json={"report_name": "x"})
                message = refused(response, "invalid_parameter")
                assert f"Path parameter {argument!r} holds a NUL character" in message
                checked.append((method, rule.rule))
    assert ("GET", "/v1/vendors/<object_id>") in checked
    assert ("DELETE", "/v1/import-reports/<slug>") in checked
    assert ("POST", "/ops/batches/<batch_id>/retry") in checked
    assert len(checked) >= 15


@pytest.mark.parametrize(
    "url",
    [
        "/v1/vendors?external_id=a%00b",
        "/v1/services?external_id=a%00b",
        "/v1/assessments?external_id=a%00b",
        "/v1/import/batches?slug=%00",
        "/v1/import/batches?status=%00",
        "/v1/import-reports?limit=%00",
        "/v1/webhooks?unknown=%00",
        "/v1/vendors?a%00b=1",
    ],
)
def test_a_nul_in_a_query_parameter_is_422(client, auth, url):
    message = refused(client.get(url, headers=auth), "invalid_parameter")
    assert "holds a NUL character" in message


def test_without_a_key_a_nul_in_the_url_is_still_401(client):
    response = client.get("/v1/import-reports/a%00b")
    assert response.status_code == 401
    assert response.json["detail"]["code"] == "invalid_api_key"


def test_a_nul_in_the_key_or_the_idempotency_key_is_refused(client, auth):
    response = client.get("/v1/vendors", headers={"Authorization": auth["Authorization"] + "\x00"})
    assert response.status_code == 401
    response = client.post(
        "/v1/import/vendors",
        json={"data": [vendor(1)]},
        headers={**auth, "Idempotency-Key": "key\x00"},
    )
    refused(response, "invalid_idempotency_key")


REPORT = {"slug": "r", "report_name": "R", "base_object": "vendor", "mapping": MAPPINGS["vendor"]}
WEBHOOK = {
    "url": "https://example.com/hooks",
    "events": ["Import.Completed"],
    "secret": "a-secret-of-at-least-16",
}


@pytest.mark.parametrize(
    "method, url, body, field",
    [
        ("POST", "/v1/import-reports", {**REPORT, "report_name": "R\x00"}, "report_name"),
        (
            "POST",
            "/v1/import-reports",
            {**REPORT, "mapping": {**MAPPINGS["vendor"], "name": "Supplier\x00Name"}},
            "mapping.name",
        ),
        (
            "POST",
            "/v1/import-reports",
            {**REPORT, "mapping": {**MAPPINGS["vendor"], "web\x00site": "W"}},
            "mapping",
        ),
        ("POST", "/v1/import-reports", {**REPORT, "slug": "r\x00"}, "slug"),
        ("POST", "/v1/import-reports", {**REPORT, "required": ["website\x00"]}, "required.0"),
        ("PATCH", "/v1/import-reports/vendors", {"report_name": "\x00"}, "report_name"),
        (
            "PATCH",
            "/v1/import-reports/vendors",
            {"mapping": {**MAPPINGS["vendor"], "website": "Web\x00"}},
            "mapping.website",
        ),
        ("POST", "/v1/webhooks", {**WEBHOOK, "secret": WEBHOOK["secret"] + "\x00"}, "secret"),
        ("POST", "/v1/webhooks", {**WEBHOOK, "url": "https://example.com/\x00"}, "url"),
        ("POST", "/v1/webhooks", {**WEBHOOK, "events": ["Import.Completed\x00"]}, "events.0"),
    ],
)
def test_a_nul_in_a_json_body_is_422_naming_where(client, auth, method, url, body, field):
    response = client.open(url, method=method, json=body, headers=auth)
    message = refused(response, "invalid_body")
    assert f"{field}: " in message and "NUL character" in message
    assert [problem["field"] for problem in response.json["detail"]["errors"]] == [field]


def test_a_lone_surrogate_in_a_json_body_is_422(client, auth):
    body = b'{"slug": "r", "report_name": "\\ud800", "base_object": "vendor", "mapping": {}}'
    response = client.post(
        "/v1/import-reports", data=body, content_type="application/json", headers=auth
    )
    assert "surrogate" in refused(response, "invalid_body")


# --- inside import records: a problem of that record only --------------------------


def errors_by_index(body: dict[str, Any]) -> dict[int, list[tuple[str | None, str]]]:
    found: dict[int, list[tuple[str | None, str]]] = {}
    for error in body["errors"]:
        found.setdefault(error["index"], []).append((error["field"], error["error_code"]))
    return found


def test_nul_characters_inside_records_fail_only_their_records(client, auth):
    records = [
        vendor(0),
        vendor(1, **{"Supplier Name": "Acme\x00"}),
        {"Supplier ID": "V-\x00", "Supplier Name": "Nul id"},
        vendor(3, **{"Status": "active\x00", "Tags": ["a", "b\x00"]}),
        vendor(4, **{"Next Assessment": "2026-01-01\x00", "IRQ Score": "5\x00"}),
        vendor(5, **{"Reg\x00ion": "EMEA"}),  # an unmapped key: a warning, stored as sent
    ]
    response = client.post("/v1/import/vendors", json={"data": records}, headers=auth)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["created_count"] == 2
    assert errors_by_index(body) == {
        1: [("Supplier Name", "invalid_field_value")],
        2: [("Supplier ID", "invalid_field_value")],
        3: [("Status", "invalid_field_value"), ("Tags", "invalid_field_value")],
        4: [("IRQ Score", "invalid_field_value"), ("Next Assessment", "invalid_field_value")],
    }
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(5, "Reg\x00ion")]
    errors = client.get(f"/v1/import/batches/{body['batch_id']}/errors", headers=auth).json
    assert errors["total"] == 6


HUGE = "9" * 401


def test_a_huge_number_or_a_lone_surrogate_fails_only_its_record_in_every_format(client, auth):
    json_body = (
        '{"data": [{"Supplier ID": "J-1", "Supplier Name": "Fine"},'
        ' {"Supplier ID": "J-2", "Supplier Name": "Huge", "IRQ Score": 1e400},'
        f' {{"Supplier ID": "J-3", "Supplier Name": "Long", "IRQ Score": {HUGE}}},'
        ' {"Supplier ID": "J-4", "Supplier Name": "\\ud800"}]}'
    )
    ndjson_body = "\n".join(
        [
            '{"Supplier ID": "N-1", "Supplier Name": "Fine"}',
            '{"Supplier ID": "N-2", "Supplier Name": "Huge", "IRQ Score": -1e400}',
            '{"Supplier ID": "N-3", "Supplier Name": "\\udc00 low"}',
        ]
    )
    csv_body = (
        f"Supplier ID,Supplier Name,IRQ Score\r\nC-1,Fine,5\r\nC-2,Huge,1e400\r\n{HUGE},Long,\r\n"
    )
    for content_type, body, failed in (
        ("application/json", json_body, {1: "IRQ Score", 2: "IRQ Score", 3: "Supplier Name"}),
        ("application/x-ndjson", ndjson_body, {1: "IRQ Score", 2: "Supplier Name"}),
        ("text/csv", csv_body, {1: "IRQ Score", 2: "Supplier ID"}),
    ):
        response = client.post(
            "/v1/import/vendors",
            data=body.encode(),
            content_type=content_type,
            headers=auth,
        )
        assert response.status_code == 200, (content_type, response.json)
        answer = response.json
        assert answer["created_count"] == 1, content_type
        assert {
            index: [field for field, _ in problems]
            for index, problems in errors_by_index(answer).items()
        } == {index: [field] for index, field in failed.items()}, content_type
        assert {error["error_code"] for error in answer["errors"]} == {"invalid_field_value"}


def test_text_at_its_length_limit_is_stored_and_one_more_character_fails(client, auth):
    """The limits of the field catalog are the columns' own: 255 characters, 10,000 for
    a description, 2,048 for a website (counted with the https:// it may be given)."""
    host = "a" * 59 + "."
    website = "https://" + host * 33 + "b" * 56 + ".com"
    assert len(website) == 2048
    records = [
        vendor(0, **{"Supplier Name": "é" * 255, "Website": website}),
        vendor(1, **{"Supplier Name": "é" * 256}),
        vendor(2, **{"Website": website.removeprefix("https://") + "x" * 8}),
    ]
    mapping = {**MAPPINGS["vendor"], "description": "Description"}
    client.patch("/v1/import-reports/vendors", json={"mapping": mapping}, headers=auth)
    records.append(vendor(3, Description="d" * 10_000))
    records.append(vendor(4, Description="d" * 10_001))
    response = client.post("/v1/import/vendors", json={"data": records}, headers=auth)
    assert response.status_code == 200, response.json
    body = response.json
    assert [r["index"] for r in body["results"]] == [0, 3]
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "Supplier Name"),
        (2, "Website"),
        (4, "Description"),
    ]
    assert "at most 2048 characters" in body["errors"][1]["message"]


def test_the_longest_request_id_is_kept_with_its_batch(client, auth, pg):
    """X-Request-ID is honoured up to 64 characters (the column that keeps it with the
    batch); a longer one is replaced, not a 500."""
    request_id = "r" * 64
    response = client.post(
        "/v1/import/vendors",
        json={"data": [vendor(1)]},
        headers={**auth, "X-Request-ID": request_id},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] == request_id
    with pg.session() as session:
        stored = session.scalar(
            sa.select(ImportBatch.request_id).where(ImportBatch.id == response.json["batch_id"])
        )
    assert stored == request_id
    longer = client.post(
        "/v1/import/vendors",
        json={"data": [vendor(2)]},
        headers={**auth, "X-Request-ID": "r" * 65},
    )
    assert longer.status_code == 200, longer.get_data(as_text=True)
    assert len(longer.headers["X-Request-ID"]) == 32  # generated
