"""The import call, end to end through the Flask app with the task function run inline."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from importer.models import OBJECT_TABLES, ImportBatch, ImportReport
from tests.factories import vendor


def post(client, auth, records, slug="vendors", **headers):
    return client.post(f"/v1/import/{slug}", json={"data": records}, headers={**auth, **headers})


def test_small_batch_is_written_and_answered_record_by_record(client, auth, make_report):
    make_report()
    response = post(client, auth, [vendor(1, Website="acme.com"), vendor(2)])
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "completed"
    assert (body["received_count"], body["created_count"], body["updated_count"]) == (2, 2, 0)
    assert body["failed_count"] == 0 and body["errors"] == [] and body["warnings"] == []
    assert [r["external_id"] for r in body["results"]] == ["V-00001", "V-00002"]
    assert all(r["action"] == "created" and r["status"] == "success" for r in body["results"])
    stored = client.get(f"/v1/vendors/{body['results'][0]['coverbase_id']}", headers=auth).json
    assert stored["external_id"] == "V-00001"
    assert stored["name"] == "Vendor 1"
    assert stored["website"] == "https://acme.com"
    assert body["completed_at"] >= body["received_at"] > 0


def test_reimport_updates_the_same_objects(client, auth, make_report):
    make_report()
    first = post(client, auth, [vendor(1), vendor(2)]).json
    second = post(client, auth, [vendor(2, **{"Supplier Name": "Renamed"}), vendor(3)]).json
    assert [(r["external_id"], r["action"]) for r in second["results"]] == [
        ("V-00002", "updated"),
        ("V-00003", "created"),
    ]
    assert second["results"][0]["coverbase_id"] == first["results"][1]["coverbase_id"]
    assert (second["created_count"], second["updated_count"]) == (1, 1)
    listed = client.get("/v1/vendors", headers=auth).json
    assert listed["total"] == 3
    renamed = client.get("/v1/vendors?external_id=V-00002", headers=auth).json["items"]
    assert [v["name"] for v in renamed] == ["Renamed"]


def test_a_reimport_that_changes_nothing_says_so_and_moves_no_updated_at(
    client, auth, make_report, db
):
    make_report()
    first = post(client, auth, [vendor(n, Tags="a, b", **{"IRQ Score": "85"}) for n in range(3)])
    assert [r["changed"] for r in first.json["results"]] == [True] * 3
    assert first.json["unchanged_count"] == 0
    table = OBJECT_TABLES["vendor"]
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    with db.session() as session:
        session.execute(sa.update(table).values(updated_at=old))
    since = int(old.timestamp()) + 1

    again = post(
        client,
        auth,
        [
            vendor(0, Tags=["a", "b"], **{"IRQ Score": 85}),  # the same values, other forms
            vendor(1),  # fewer fields, the same values
            vendor(2, **{"Supplier Name": "Renamed"}),
        ],
    )

    body = again.json
    assert (body["created_count"], body["updated_count"], body["unchanged_count"]) == (0, 3, 2)
    assert [(r["action"], r["changed"]) for r in body["results"]] == [
        ("updated", False),
        ("updated", False),
        ("updated", True),
    ]
    assert client.get(f"/v1/import/batches/{body['batch_id']}", headers=auth).json == body
    recent = client.get(f"/v1/vendors?updated_since={since}", headers=auth).json
    assert [item["external_id"] for item in recent["items"]] == ["V-00002"]


def test_fields_absent_from_an_update_keep_their_values(client, auth, make_report):
    make_report()
    post(client, auth, [vendor(1, Website="acme.com", Tags="a, b")])
    post(client, auth, [vendor(1, Website="", **{"IRQ Score": 50})])
    stored = client.get("/v1/vendors?external_id=V-00001", headers=auth).json["items"][0]
    assert stored["website"] == "https://acme.com"
    assert stored["tags"] == ["a", "b"]
    assert stored["raw_irq_score"] == 50


def test_mixed_batch_writes_the_valid_and_reports_every_problem(client, auth, make_report):
    make_report()
    records = [
        vendor(1),
        {"Supplier ID": "V-2", "Supplier Name": " ", "IRQ Score": "high", "Website": "not a url"},
        vendor(3, Extra="ignored"),
    ]
    response = post(client, auth, records)
    assert response.status_code == 200
    body = response.json
    assert (body["created_count"], body["failed_count"]) == (2, 1)
    assert body["received_count"] == body["created_count"] + body["updated_count"] + 1
    assert [(e["index"], e["field"], e["error_code"]) for e in body["errors"]] == [
        (1, "Supplier Name", "missing_required_field"),
        (1, "Website", "invalid_field_value"),
        (1, "IRQ Score", "invalid_field_value"),
    ]
    assert all(e["external_id"] == "V-2" for e in body["errors"])
    assert (
        "IRQ Score" in body["errors"][2]["message"] and "0 to 100" in body["errors"][2]["message"]
    )
    assert body["warnings"] == [
        {
            "index": 2,
            "external_id": "V-00003",
            "field": "Extra",
            "error_code": "unmapped_field",
            "message": "Field 'Extra' is not in the report's mapping; its value was ignored.",
        }
    ]
    assert [r["index"] for r in body["results"]] == [0, 2]


def test_every_record_failing_is_a_400_with_the_same_body(client, auth, make_report):
    make_report()
    response = post(client, auth, [{"Supplier Name": "No id"}, {"Supplier ID": "V-9"}])
    assert response.status_code == 400
    body = response.json
    assert body["status"] == "completed"
    assert (body["failed_count"], body["created_count"], body["results"]) == (2, 0, [])
    assert [(e["index"], e["external_id"], e["error_code"]) for e in body["errors"]] == [
        (0, None, "missing_required_field"),
        (1, "V-9", "missing_required_field"),
    ]


def test_duplicate_external_ids_fail_every_occurrence(client, auth, make_report):
    make_report()
    records = [
        vendor(1),
        vendor(2),
        vendor(1, **{"Supplier Name": "Other"}),
        {"Supplier ID": " V-00002 "},
    ]
    body = post(client, auth, records).json
    codes = [(e["index"], e["error_code"]) for e in body["errors"]]
    assert codes == [
        (0, "duplicate_external_id"),
        (1, "duplicate_external_id"),
        (2, "duplicate_external_id"),
        (3, "missing_required_field"),
        (3, "duplicate_external_id"),
    ]
    assert body["failed_count"] == 4
    assert client.get("/v1/vendors", headers=auth).json["total"] == 0


def test_a_report_whose_base_object_left_the_catalog_fails_every_record(
    client, auth, make_report, db
):
    report = make_report()
    with db.session() as session:
        session.execute(
            sa.update(ImportReport)
            .where(ImportReport.id == report.id)
            .values(base_object="contract")
        )
    response = post(client, auth, [vendor(1), vendor(2)])
    assert response.status_code == 400
    body = response.json
    assert body["base_object"] == "contract"
    assert [(e["index"], e["external_id"], e["error_code"]) for e in body["errors"]] == [
        (0, "V-00001", "unknown_base_object"),
        (1, "V-00002", "unknown_base_object"),
    ]


def test_services_and_assessments_refer_to_vendors_at_write_time(client, auth, make_report):
    make_report()
    make_report("service")
    make_report("assessment")
    vendor_id = post(client, auth, [vendor(1)]).json["results"][0]["coverbase_id"]
    services = [
        {
            "Service ID": "S-1",
            "Service Name": "Payroll",
            "Supplier ID": "V-00001",
            "Tier": "Tier 1",
        },
        {"Service ID": "S-2", "Service Name": "Ghost", "Supplier ID": "V-404"},
    ]
    body = post(client, auth, services, slug="services").json
    assert (body["created_count"], body["failed_count"]) == (1, 1)
    assert body["errors"][0]["index"] == 1
    assert body["errors"][0]["error_code"] == "invalid_field_value"
    assert "V-404" in body["errors"][0]["message"]
    service = client.get(f"/v1/services/{body['results'][0]['coverbase_id']}", headers=auth).json
    assert (service["vendor_id"], service["criticality_tier"]) == (vendor_id, "tier_1")

    assessments = [
        {
            "Assessment ID": "A-1",
            "Supplier ID": "V-00001",
            "Start": "2026-01-01",
            "End": "2026-03-31",
            "Score": "0.85",
            "Status": "In Progress",
        },
        {
            "Assessment ID": "A-2",
            "Supplier ID": "V-00001",
            "Start": "2026-05-01",
            "End": "2026-04-01",
        },
    ]
    response = post(client, auth, assessments, slug="assessments")
    body = response.json
    assert response.status_code == 200
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "End")]
    assessment = client.get(
        f"/v1/assessments/{body['results'][0]['coverbase_id']}", headers=auth
    ).json
    assert assessment["period_start"] == 1767225600  # 2026-01-01T00:00:00Z
    assert assessment["score_percent"] == 0.85 and assessment["status"] == "in_progress"
    assert assessment["vendor_id"] == vendor_id


def test_every_reference_failing_is_a_400(client, auth, make_report):
    make_report("service")
    response = post(
        client,
        auth,
        [{"Service ID": "S-1", "Service Name": "x", "Supplier ID": "nope"}],
        slug="services",
    )
    assert response.status_code == 400
    assert response.json["failed_count"] == 1


def test_more_than_the_sync_limit_is_a_202_validated_by_the_workers(
    client, auth, make_report, app, worker
):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_max_records=3, chunk_size=2)
    worker.hold = True
    make_report()
    records = [vendor(n) for n in range(4)]
    records += [{"Supplier ID": "bad"}, {"Supplier ID": "V-00001", "IRQ Score": "x"}]
    response = post(client, auth, records)
    assert response.status_code == 202
    body = response.json
    location = response.headers["Location"]
    assert location == f"/v1/import/batches/{body['batch_id']}"
    assert body["status"] == "queued"
    # Known at once: the batch-wide problem (an external_id sent twice).
    assert [(e["index"], e["error_code"]) for e in body["errors"]] == [
        (1, "duplicate_external_id"),
        (5, "duplicate_external_id"),
    ]
    assert (body["failed_count"], body["progress"]) == (2, {"processed": 2, "total": 6})
    worker.run_held()
    done = client.get(location, headers=auth).json
    assert (done["status"], done["created_count"], done["failed_count"]) == ("completed", 3, 3)
    assert done["progress"] == {"processed": 6, "total": 6}
    # Every problem of every record, the duplicates' other problems included, by index.
    assert [e["index"] for e in done["errors"]] == sorted(e["index"] for e in done["errors"])
    assert sorted((e["index"], e["error_code"]) for e in done["errors"]) == [
        (1, "duplicate_external_id"),
        (4, "missing_required_field"),
        (5, "duplicate_external_id"),
        (5, "invalid_field_value"),
        (5, "missing_required_field"),
    ]
    assert [r["index"] for r in done["results"]] == [0, 2, 3]


def test_prefer_respond_async_is_honoured(client, auth, make_report, worker):
    worker.hold = True
    make_report()
    response = post(client, auth, [vendor(1)], Prefer="respond-async, wait=5")
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "respond-async"
    assert response.json["status"] == "queued"


def test_a_batch_not_finished_within_the_sync_wait_is_a_202(client, auth, make_report, app, worker):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_wait_seconds=0)
    worker.hold = True
    make_report()
    response = post(client, auth, [vendor(1)])
    assert response.status_code == 202
    assert response.json["status"] == "queued"
    worker.run_held()
    assert client.get(response.headers["Location"], headers=auth).json["status"] == "completed"


def test_async_batch_that_is_all_invalid_answers_400_at_once(client, auth, make_report, worker):
    worker.hold = True
    make_report()
    response = post(client, auth, [{"Supplier ID": "x"}], Prefer="respond-async")
    assert response.status_code == 400
    assert response.json["status"] == "completed"
    assert worker.sent == []


def test_the_batch_records_the_report_version_it_used(client, auth, make_report):
    make_report()
    client.patch("/v1/import-reports/vendors", json={"required": ["website"]}, headers=auth)
    body = post(client, auth, [vendor(1)]).json
    assert body["report_version"] == 2
    assert body["errors"][0]["error_code"] == "missing_required_field"
    assert body["errors"][0]["field"] == "Website"


def test_large_batches_are_split_into_chunks_and_paginated(client, auth, make_report, app, db):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(chunk_size=10, inline_items=5)
    make_report()
    records = [vendor(n) if n % 7 else {"Supplier ID": f"X-{n}"} for n in range(1, 38)]
    body = post(client, auth, records).json
    invalid = [n - 1 for n in range(1, 38) if n % 7 == 0]
    assert body["failed_count"] == len(invalid) == 5
    assert len(body["results"]) == 5 and body["results_total"] == 32
    assert len(body["errors"]) == 5 and body["errors_total"] == 5
    with db.session() as session:
        chunks = session.scalar(
            sa.select(ImportBatch.chunk_count).where(ImportBatch.id == body["batch_id"])
        )
    assert chunks == 4

    def read_all(kind, limit):
        items, offset = [], 0
        while True:
            page = client.get(
                f"/v1/import/batches/{body['batch_id']}/{kind}?limit={limit}&offset={offset}",
                headers=auth,
            ).json
            assert page["total"] == body[f"{kind}_total"]
            items += page["items"]
            offset += limit
            if offset >= page["total"]:
                return items

    results = read_all("results", 7)
    assert [r["index"] for r in results] == [i for i in range(37) if i not in invalid]
    assert [e["index"] for e in read_all("errors", 2)] == invalid
    assert read_all("warnings", 3) == []


def test_wrong_key_or_report_of_another_org_is_not_found(client, auth, make_report, make_org):
    other_org, other_key = make_org("Other")
    make_report(org=other_org, slug="theirs")
    response = post(client, auth, [vendor(1)], slug="theirs")
    assert response.status_code == 404
    assert response.json["detail"]["code"] == "report_not_found"


def test_a_failed_hand_over_leaves_the_batch_to_the_relay(client, auth, make_report, app, db):
    """Accepted, then the broker refuses the message: the batch is kept and the relay
    (not the web) sends it."""
    import datetime as dt

    from importer.models import ImportChunk

    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_wait_seconds=0)
    broker = services.outbox.broker
    broker.down = True  # gone after the web's check
    make_report()
    response = post(client, auth, [vendor(1)])
    assert response.status_code == 202
    with db.session() as session:
        chunks = session.scalars(sa.select(ImportChunk)).all()
        assert [(c.status.value, c.dispatched_at) for c in chunks] == [("pending", None)]
        session.execute(
            sa.update(ImportChunk).values(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        )
    broker.down = False  # back
    assert services.outbox.relay() == 1
    assert broker.sent == [chunks[0].id]
