"""``?dry_run=true``: validate and report what would happen; write nothing."""

from __future__ import annotations

from tests.factories import vendor


def post(client, auth, records, slug="vendors", query="?dry_run=true", **headers):
    return client.post(
        f"/v1/import/{slug}{query}", json={"data": records}, headers={**auth, **headers}
    )


def test_a_dry_run_reports_actions_and_writes_nothing(client, auth, make_report):
    make_report()
    first = post(client, auth, [vendor(1), vendor(3)], query="").json["results"]
    existing = [result["coverbase_id"] for result in first]
    response = post(
        client,
        auth,
        [vendor(1, **{"Supplier Name": "Renamed"}), vendor(2), {"Supplier ID": "x"}, vendor(3)],
    )
    assert response.status_code == 200
    body = response.json
    assert body["dry_run"] is True
    assert (body["created_count"], body["updated_count"], body["failed_count"]) == (1, 2, 1)
    assert body["unchanged_count"] == 1
    assert [
        (r["external_id"], r["action"], r["coverbase_id"], r["changed"]) for r in body["results"]
    ] == [
        ("V-00001", "updated", existing[0], True),
        ("V-00002", "created", None, True),
        ("V-00003", "updated", existing[1], False),
    ]
    assert [e["index"] for e in body["errors"]] == [2]
    vendors = client.get("/v1/vendors", headers=auth).json
    assert sorted(item["name"] for item in vendors["items"]) == ["Vendor 1", "Vendor 3"]


def test_dry_run_checks_references_like_a_write(client, auth, make_report):
    make_report()
    make_report("service")
    post(client, auth, [vendor(1)], query="")
    services = [
        {"Service ID": "S-1", "Service Name": "ok", "Supplier ID": "V-00001"},
        {"Service ID": "S-2", "Service Name": "ghost", "Supplier ID": "V-404"},
    ]
    body = post(client, auth, services, slug="services").json
    assert (body["created_count"], body["failed_count"]) == (1, 1)
    assert client.get("/v1/services", headers=auth).json["total"] == 0


def test_a_dry_run_where_everything_fails_is_400(client, auth, make_report):
    make_report()
    response = post(client, auth, [{"Supplier ID": "x"}])
    assert response.status_code == 400
    assert response.json["dry_run"] is True


def test_large_dry_runs_follow_the_same_status_rules(client, auth, make_report, app, worker):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_max_records=2)
    worker.hold = True
    make_report()
    response = post(client, auth, [vendor(n) for n in range(3)])
    assert response.status_code == 202
    worker.run_held()
    done = client.get(response.headers["Location"], headers=auth).json
    assert (done["status"], done["dry_run"], done["created_count"]) == ("completed", True, 3)
    assert client.get("/v1/vendors", headers=auth).json["total"] == 0


def test_dry_run_must_be_a_boolean(client, auth, make_report):
    make_report()
    response = post(client, auth, [vendor(1)], query="?dry_run=perhaps")
    assert (response.status_code, response.json["detail"]["code"]) == (422, "invalid_parameter")
