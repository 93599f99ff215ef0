"""The HTTP API end to end: gunicorn, a real Celery worker, PostgreSQL and Redis."""

from __future__ import annotations

import uuid

from tests.factories import ASSESSMENT_MAPPING, SERVICE_MAPPING, VENDOR_MAPPING, vendor


def test_a_1000_record_batch_is_answered_synchronously(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    records = [
        vendor(n, Status="active", Tags="a,b", **{"IRQ Score": n % 100}) for n in range(1000)
    ]
    response = api.post(f"/v1/import/{slug}", json={"data": records})
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert (body["status"], body["created_count"], body["failed_count"]) == ("completed", 1000, 0)
    assert len(body["results"]) == 1000
    assert [r["index"] for r in body["results"]] == list(range(1000))
    assert len({r["coverbase_id"] for r in body["results"]}) == 1000
    assert api.get("/v1/vendors?limit=1").json()["total"] == 1000


def test_a_20000_record_batch_runs_asynchronously_to_completion(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    records = [vendor(n) for n in range(20_000)]
    records[123] = {"Supplier ID": "broken", "IRQ Score": "lots"}
    response = api.post(f"/v1/import/{slug}", json={"data": records})
    assert response.status_code == 202, response.text[:500]
    accepted = response.json()
    assert (accepted["status"], accepted["errors"]) == ("queued", [])  # the workers validate it
    assert response.headers["Location"] == f"/v1/import/batches/{accepted['batch_id']}"

    done = api.wait_done(accepted["batch_id"])
    assert done["status"] == "completed"
    assert [(e["index"], e["error_code"]) for e in done["errors"]] == [
        (123, "missing_required_field"),
        (123, "invalid_field_value"),
    ]
    assert (done["created_count"], done["updated_count"], done["failed_count"]) == (19_999, 0, 1)
    assert done["progress"] == {"processed": 20_000, "total": 20_000}
    assert done["results_total"] == 19_999 and len(done["results"]) == 1000
    # Past offset 10,000 a list is read by cursor: from the deepest offset page to the end.
    url = f"/v1/import/batches/{accepted['batch_id']}/results?limit=200"
    page = api.get(f"{url}&offset=10000").json()
    pages = [page]
    while page["next_cursor"] is not None:
        page = api.get(f"{url}&cursor={page['next_cursor']}").json()
        pages.append(page)
    assert pages[-1]["offset"] == 19_800 and pages[-1]["items"][-1]["index"] == 19_999
    assert sum(len(p["items"]) for p in pages) == 19_999 - 10_000
    assert api.get("/v1/vendors?limit=1").json()["total"] == 19_999


def test_mixed_batches_and_reimport_as_updates(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    first = api.post(
        f"/v1/import/{slug}",
        json={"data": [vendor(1), vendor(2), {"Supplier ID": "x", "Website": "nope"}, vendor(1)]},
    )
    assert first.status_code == 200
    body = first.json()
    assert (body["created_count"], body["failed_count"]) == (1, 3)
    assert {e["error_code"] for e in body["errors"]} == {
        "duplicate_external_id",
        "missing_required_field",
        "invalid_field_value",
    }
    again = api.post(
        f"/v1/import/{slug}", json={"data": [vendor(1), vendor(2, Category="x")]}
    ).json()
    assert [r["action"] for r in again["results"]] == ["created", "updated"]
    assert again["results"][1]["coverbase_id"] == body["results"][0]["coverbase_id"]
    everything_failed = api.post(f"/v1/import/{slug}", json={"data": [{"Supplier Name": "no id"}]})
    assert everything_failed.status_code == 400


def test_services_and_assessments_refer_to_vendors(api):
    vendors = api.create_report("vendor", VENDOR_MAPPING)
    services = api.create_report("service", SERVICE_MAPPING)
    assessments = api.create_report("assessment", ASSESSMENT_MAPPING)
    vendor_ids = [
        r["coverbase_id"]
        for r in api.post(f"/v1/import/{vendors}", json={"data": [vendor(1), vendor(2)]}).json()[
            "results"
        ]
    ]
    service_body = api.post(
        f"/v1/import/{services}",
        json={
            "data": [
                {
                    "Service ID": "S-1",
                    "Service Name": "Payroll",
                    "Supplier ID": "V-00001",
                    "Hosting": "SaaS",
                },
                {"Service ID": "S-2", "Service Name": "Ghost", "Supplier ID": "V-99999"},
            ]
        },
    ).json()
    assert (service_body["created_count"], service_body["failed_count"]) == (1, 1)
    assert service_body["errors"][0]["index"] == 1
    service = api.get(f"/v1/services/{service_body['results'][0]['coverbase_id']}").json()
    assert (service["vendor_id"], service["hosting_model"]) == (vendor_ids[0], "saas")

    assessment_body = api.post(
        f"/v1/import/{assessments}",
        json={
            "data": [
                {
                    "Assessment ID": "A-1",
                    "Supplier ID": "V-00002",
                    "Score": 0.5,
                    "Start": "2026-01-01",
                    "End": "2026-02-01",
                    "Status": "complete",
                }
            ]
        },
    ).json()
    assert assessment_body["created_count"] == 1
    listed = api.get("/v1/assessments?external_id=A-1").json()["items"]
    assert [(a["vendor_id"], a["status"]) for a in listed] == [(vendor_ids[1], "complete")]


def test_idempotency_key_on_the_real_stack(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    key = uuid.uuid4().hex
    body = {"data": [vendor(1), vendor(2)]}
    first = api.post(f"/v1/import/{slug}", json=body, headers={"Idempotency-Key": key})
    second = api.post(f"/v1/import/{slug}", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert api.get("/v1/import/batches").json()["total"] == 1


def test_every_kind_of_value_reads_back_from_postgresql(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    record = vendor(
        7,
        Website="acme.example.com",
        Status="Active",
        Tags=["pii", " hosting ", ""],
        Enterprise="yes",
        **{
            "IRQ Score": " 85.5 ",
            "Next Assessment": "2026-07-01T23:30:00-05:00",
            "Contact Email": "sec@acme.example.com",
        },
    )
    body = api.post(f"/v1/import/{slug}", json={"data": [record]}).json()
    first = api.get(f"/v1/vendors/{body['results'][0]['coverbase_id']}").json()
    assert {
        key: first[key]
        for key in (
            "external_id",
            "name",
            "website",
            "status",
            "tags",
            "enterprise",
            "raw_irq_score",
            "next_assessment_date",
            "primary_contact_email",
            "description",
        )
    } == {
        "external_id": "V-00007",
        "name": "Vendor 7",
        "website": "https://acme.example.com",
        "status": "active",
        "tags": ["pii", "hosting"],
        "enterprise": True,
        "raw_irq_score": 85.5,
        "next_assessment_date": 1782864000,  # 2026-07-01T00:00:00Z
        "primary_contact_email": "sec@acme.example.com",
        "description": None,
    }
    # An update carrying only some fields keeps the others.
    api.post(f"/v1/import/{slug}", json={"data": [vendor(7, Enterprise="no", Tags="")]})
    second = api.get(f"/v1/vendors/{first['id']}").json()
    assert (second["enterprise"], second["tags"], second["website"]) == (
        False,
        ["pii", "hosting"],
        "https://acme.example.com",
    )
    assert second["updated_at"] >= first["updated_at"]


def test_the_overview_sees_the_running_worker_and_the_redis_queues(stack, api):
    from importer import monitoring
    from importer.broker import CeleryBroker
    from importer.config import Settings
    from importer.db import Database

    settings = Settings.from_env(stack.env)
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            overview = monitoring.overview(session, settings, CeleryBroker(settings))
    finally:
        db.dispose()
    assert all(isinstance(depth, int) for depth in overview.queues.values())
    online = [worker for worker in overview.workers if worker.state == "online"]
    assert len(online) == 1
    assert (online[0].concurrency, online[0].bulk_slots) == (3, 2)  # 2 bulk + 1 interactive
    assert online[0].queues == ["bulk", "interactive", "webhooks"]
