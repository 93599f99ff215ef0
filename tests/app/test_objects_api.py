"""The base-object read API."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from importer.models import OBJECT_TABLES
from tests.factories import vendor


def test_objects_read_back_with_catalog_types(client, auth, make_report):
    make_report()
    record = vendor(
        1,
        Website="https://acme.example.com/security",
        Status="Active",
        Tags=["pii", " hosting ", ""],
        Enterprise="yes",
        **{
            "IRQ Score": " 85.5 ",
            "Next Assessment": "2026-07-01T23:30:00-05:00",
            "Contact Email": "sec@acme.example.com",
        },
    )
    body = client.post("/v1/import/vendors", json={"data": [record]}, headers=auth).json
    stored = client.get(f"/v1/vendors/{body['results'][0]['coverbase_id']}", headers=auth).json
    assert stored == {
        "id": body["results"][0]["coverbase_id"],
        "external_id": "V-00001",
        "name": "Vendor 1",
        "website": "https://acme.example.com/security",
        "description": None,
        "hq_location": None,
        "status": "active",
        "tags": ["pii", "hosting"],
        "engagement_type": None,
        "use_case": None,
        "business_unit": None,
        "enterprise": True,
        "category": None,
        "raw_irq_score": 85.5,
        "raw_residual_risk_score": None,
        "next_assessment_date": int(dt.datetime(2026, 7, 1, tzinfo=dt.UTC).timestamp()),
        "contract_end_date": None,
        "primary_contact_email": "sec@acme.example.com",
        "created_at": stored["created_at"],
        "updated_at": stored["updated_at"],
    }
    assert stored["created_at"] == stored["updated_at"]
    assert body["received_at"] <= stored["created_at"] <= body["completed_at"]


def test_filters_and_pagination(client, auth, make_report, db):
    make_report()
    client.post("/v1/import/vendors", json={"data": [vendor(n) for n in range(5)]}, headers=auth)
    table = OBJECT_TABLES["vendor"]
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with db.session() as session:
        session.execute(
            sa.update(table)
            .where(table.c.external_id.in_(["V-00000", "V-00001"]))
            .values(updated_at=old)
        )
    since = int(old.timestamp()) + 1
    recent = client.get(f"/v1/vendors?updated_since={since}", headers=auth).json
    assert sorted(item["external_id"] for item in recent["items"]) == [
        "V-00002",
        "V-00003",
        "V-00004",
    ]
    one = client.get("/v1/vendors?external_id=V-00003", headers=auth).json
    assert [item["external_id"] for item in one["items"]] == ["V-00003"]
    page = client.get("/v1/vendors?limit=2&offset=4", headers=auth).json
    assert (len(page["items"]), page["total"]) == (1, 5)
    bad = client.get("/v1/vendors?updated_since=yesterday", headers=auth)
    assert (bad.status_code, bad.json["detail"]["code"]) == (422, "invalid_parameter")


def test_objects_of_another_org_are_invisible(client, auth, make_report, make_org):
    make_report()
    vendor_id = client.post("/v1/import/vendors", json={"data": [vendor(1)]}, headers=auth).json[
        "results"
    ][0]["coverbase_id"]
    _, other_key = make_org("Other")
    other = {"Authorization": f"Bearer {other_key}"}
    response = client.get(f"/v1/vendors/{vendor_id}", headers=other)
    assert (response.status_code, response.json["detail"]["code"]) == (404, "vendor_not_found")
    assert client.get("/v1/vendors", headers=other).json["total"] == 0
    assert client.get("/v1/vendors?external_id=V-00001", headers=other).json["items"] == []
