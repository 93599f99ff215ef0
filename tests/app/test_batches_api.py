"""Reading batches: one batch, the list, and their scoping to the org."""

from __future__ import annotations

from tests.conftest import vendor


def post(client, auth, records, slug="vendors", **headers):
    return client.post(f"/v1/import/{slug}", json={"data": records}, headers={**auth, **headers})


def test_get_batch_returns_the_import_body(client, auth, make_report):
    make_report()
    posted = post(client, auth, [vendor(1), {"Supplier ID": "x"}]).json
    fetched = client.get(f"/v1/import/batches/{posted['batch_id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json == posted


def test_list_is_newest_first_and_filterable(client, auth, make_report, worker):
    make_report()
    make_report("service")
    first = post(client, auth, [vendor(1)]).json["batch_id"]
    failed = post(
        client, auth, [{"Service ID": "S", "Service Name": "n", "Supplier ID": "none"}], "services"
    )
    worker.hold = True
    queued = post(client, auth, [vendor(2)], Prefer="respond-async").json["batch_id"]

    listed = client.get("/v1/import/batches", headers=auth).json
    assert [item["batch_id"] for item in listed["items"]] == [
        queued,
        failed.json["batch_id"],
        first,
    ]
    assert listed["total"] == 3
    assert "results" not in listed["items"][0]

    by_status = client.get("/v1/import/batches?status=queued", headers=auth).json
    assert [item["batch_id"] for item in by_status["items"]] == [queued]
    by_slug = client.get("/v1/import/batches?slug=services", headers=auth).json
    assert [item["batch_id"] for item in by_slug["items"]] == [failed.json["batch_id"]]
    bad = client.get("/v1/import/batches?status=stuck", headers=auth)
    assert (bad.status_code, bad.json["detail"]["code"]) == (422, "invalid_parameter")


def test_wait_long_polls_until_the_batch_is_done(client, auth, make_report, worker, app):
    import threading

    worker.hold = True
    make_report()
    location = post(client, auth, [vendor(1)], Prefer="respond-async").headers["Location"]
    finisher = threading.Thread(target=worker.run_held)
    finisher.start()
    body = client.get(f"{location}?wait=5", headers=auth).json
    finisher.join()
    assert body["status"] == "completed"
    assert body["created_count"] == 1


def test_batches_of_another_org_are_not_found(client, auth, make_org, make_report):
    make_report()
    batch_id = post(client, auth, [vendor(1)]).json["batch_id"]
    _, other_key = make_org("Other")
    other = {"Authorization": f"Bearer {other_key}"}
    for suffix in ("", "/results", "/errors", "/warnings"):
        response = client.get(f"/v1/import/batches/{batch_id}{suffix}", headers=other)
        assert response.status_code == 404, suffix
        assert response.json["detail"]["code"] == "batch_not_found"
    assert client.get("/v1/import/batches", headers=other).json["total"] == 0
