"""Reading batches: one batch, the list, and their scoping to the org."""

from __future__ import annotations

import csv
import io

import orjson

from importer import outcomes
from importer.outcomes import KINDS
from tests.factories import vendor


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


def test_inline_caps_the_lists_of_the_body_and_keeps_the_counts(client, auth, app, make_report):
    batch = _mixed_batch(client, auth, app, make_report)  # 197 results, 33 errors; inline 5
    url = f"/v1/import/batches/{batch['batch_id']}"

    for chunks, inline in ((5, "5"), (2, "2"), (0, "0")):
        body = client.get(f"{url}?inline={inline}", headers=auth).json
        assert [len(body[kind]) for kind in ("results", "errors")] == [chunks, chunks]
        assert (body["results_total"], body["errors_total"]) == (197, 33)
        assert body["results"] == batch["results"][:chunks]
    single = post(client, auth, [vendor(1000), {"Supplier ID": "x"}]).json["batch_id"]
    bare = client.get(f"/v1/import/batches/{single}?inline=0", headers=auth).json
    assert (bare["results"], bare["errors"], bare["results_total"]) == ([], [], 1)
    for bad in ("6", "-1", "x"):
        refused = client.get(f"{url}?inline={bad}", headers=auth)
        assert (refused.status_code, refused.json["detail"]["code"]) == (422, "invalid_parameter")
        assert "inline" in refused.json["detail"]["message"]


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


# --- a batch's lists whole, in one stream ---------------------------------------------


def _mixed_batch(client, auth, app, make_report, count=230):
    """A batch of ``count`` records in chunks of 50; every 7th fails (a bad website)."""
    services = app.extensions["importer"]
    services.settings = services.settings.replace(chunk_size=50, inline_items=5)
    make_report()
    records = [vendor(n, Website="not a url") if n % 7 == 0 else vendor(n) for n in range(count)]
    body = post(client, auth, records).json
    assert body["status"] == "completed", body["status"]
    return body


def _all_pages(client, auth, batch_id, kind):
    items, offset = [], 0
    while True:
        page = client.get(
            f"/v1/import/batches/{batch_id}/{kind}?limit=200&offset={offset}", headers=auth
        ).json
        items.extend(page["items"])
        offset += 200
        if offset >= page["total"]:
            return items


def test_results_and_errors_stream_whole_as_ndjson(client, auth, app, make_report):
    batch = _mixed_batch(client, auth, app, make_report)

    for kind, total in (("results", 230 - 33), ("errors", 33)):
        response = client.get(
            f"/v1/import/batches/{batch['batch_id']}/{kind}",
            headers={**auth, "Accept": "application/x-ndjson"},
        )
        assert response.status_code == 200
        assert response.mimetype == "application/x-ndjson"
        assert response.headers["X-Total-Count"] == str(total)
        assert "Accept" in response.headers["Vary"]
        lines = [orjson.loads(line) for line in response.data.splitlines()]
        assert len(lines) == total
        assert lines == _all_pages(client, auth, batch["batch_id"], kind)  # the same items


def test_results_and_errors_stream_whole_as_csv(client, auth, app, make_report):
    batch = _mixed_batch(client, auth, app, make_report)

    response = client.get(
        f"/v1/import/batches/{batch['batch_id']}/results", headers={**auth, "Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{batch["batch_id"]}-results.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    pages = _all_pages(client, auth, batch["batch_id"], "results")
    assert [
        {
            **row,
            "index": int(row["index"]),
            "changed": {"true": True, "false": False}[row["changed"]],
        }
        for row in rows
    ] == pages

    errors = client.get(
        f"/v1/import/batches/{batch['batch_id']}/errors", headers={**auth, "Accept": "text/csv"}
    )
    lines = list(csv.reader(io.StringIO(errors.get_data(as_text=True))))
    assert lines[0] == ["index", "external_id", "field", "error_code", "message"]
    assert [(int(index), field, code) for index, _id, field, code, _ in lines[1:]] == [
        (n, "Website", "invalid_field_value") for n in range(0, 230, 7)
    ]


def test_a_stream_answers_the_fields_asked_for_in_their_order(
    client, auth, app, make_report, monkeypatch
):
    batch = _mixed_batch(client, auth, app, make_report)
    url = f"/v1/import/batches/{batch['batch_id']}"
    pages = {kind: _all_pages(client, auth, batch["batch_id"], kind) for kind in KINDS}
    looked_up = []
    external_ids = outcomes._external_ids

    def counting(session, base, object_ids):
        looked_up.extend(object_ids)
        return external_ids(session, base, object_ids)

    monkeypatch.setattr(outcomes, "_external_ids", counting)

    results = client.get(
        f"{url}/results?fields=coverbase_id, index,changed",
        headers={**auth, "Accept": "application/x-ndjson"},
    )
    assert results.status_code == 200
    lines = [orjson.loads(line) for line in results.data.splitlines()]
    assert [list(line) for line in lines[:1]] == [["coverbase_id", "index", "changed"]]
    assert lines == [
        {"coverbase_id": p["coverbase_id"], "index": p["index"], "changed": p["changed"]}
        for p in pages["results"]
    ]
    assert looked_up == []  # no external_id asked for: the objects are not read
    with_ids = client.get(
        f"{url}/results?fields=external_id", headers={**auth, "Accept": "text/csv"}
    )
    assert with_ids.get_data(as_text=True).split("\r\n") == [
        "external_id",
        *(p["external_id"] for p in pages["results"]),
        "",
    ]
    assert len(looked_up) == len(pages["results"])

    errors = client.get(
        f"{url}/errors?fields=error_code,index", headers={**auth, "Accept": "text/csv"}
    )
    rows = list(csv.reader(io.StringIO(errors.get_data(as_text=True))))
    assert rows == [["error_code", "index"]] + [
        [p["error_code"], str(p["index"])] for p in pages["errors"]
    ]
    as_ndjson = client.get(
        f"{url}/errors?fields=message", headers={**auth, "Accept": "application/x-ndjson"}
    )
    assert [orjson.loads(line) for line in as_ndjson.data.splitlines()] == [
        {"message": p["message"]} for p in pages["errors"]
    ]


def test_fields_are_checked_and_only_for_streams(client, auth, app, make_report):
    batch = _mixed_batch(client, auth, app, make_report, count=20)
    url = f"/v1/import/batches/{batch['batch_id']}/results"
    ndjson = {**auth, "Accept": "application/x-ndjson"}

    for query, names in (
        ("fields=index,name", "'name'"),
        ("fields=index,,action", "''"),
        ("fields=index,index", "once"),
    ):
        refused = client.get(f"{url}?{query}", headers=ndjson)
        assert refused.status_code == 422, query
        assert refused.json["detail"]["code"] == "invalid_parameter"
        assert "fields" in refused.json["detail"]["message"]
        assert names in refused.json["detail"]["message"]
    on_a_page = client.get(f"{url}?fields=index", headers=auth)
    assert on_a_page.status_code == 422
    assert "stream" in on_a_page.json["detail"]["message"]
    # The errors' fields are the errors' own.
    assert (
        client.get(
            f"/v1/import/batches/{batch['batch_id']}/errors?fields=coverbase_id", headers=ndjson
        ).status_code
        == 422
    )


def test_csv_cells_a_spreadsheet_would_run_are_written_inert(client, auth, make_report):
    make_report()
    records = [
        vendor(1, **{"Supplier ID": '=HYPERLINK("http://x")'}),
        vendor(2, **{"Supplier ID": "@SUM(A1)", "Website": "bad"}),
    ]
    batch = post(client, auth, records).json

    results = client.get(
        f"/v1/import/batches/{batch['batch_id']}/results", headers={**auth, "Accept": "text/csv"}
    ).get_data(as_text=True)
    errors = client.get(
        f"/v1/import/batches/{batch['batch_id']}/errors", headers={**auth, "Accept": "text/csv"}
    ).get_data(as_text=True)

    assert list(csv.DictReader(io.StringIO(results)))[0]["external_id"] == (
        '\'=HYPERLINK("http://x")'
    )
    assert list(csv.DictReader(io.StringIO(errors)))[0]["external_id"] == "'@SUM(A1)"


def test_json_pages_stay_the_default(client, auth, app, make_report):
    batch = _mixed_batch(client, auth, app, make_report, count=20)
    url = f"/v1/import/batches/{batch['batch_id']}/results?limit=3"

    for accept in (None, "*/*", "application/json", "application/xml", "text/csv;q=0.5, */*"):
        headers = {**auth, "Accept": accept} if accept else auth
        response = client.get(url, headers=headers)
        assert response.status_code == 200, accept
        assert response.mimetype == "application/json", accept
        assert [item["index"] for item in response.json["items"]] == [1, 2, 3], accept


def test_a_running_batch_has_no_stream_yet(client, auth, make_report, worker):
    make_report()
    worker.hold = True
    batch = post(client, auth, [vendor(1)], Prefer="respond-async").json

    response = client.get(
        f"/v1/import/batches/{batch['batch_id']}/results",
        headers={**auth, "Accept": "application/x-ndjson"},
    )

    assert response.status_code == 409
    assert response.json["detail"]["code"] == "batch_not_done"
    assert "?wait=" in response.json["detail"]["message"]
    worker.run_held()
    done = client.get(
        f"/v1/import/batches/{batch['batch_id']}/results",
        headers={**auth, "Accept": "application/x-ndjson"},
    )
    assert [orjson.loads(line)["external_id"] for line in done.data.splitlines()] == ["V-00001"]


def test_paged_json_decodes_each_result_once(client, auth, app, make_report, monkeypatch):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(chunk_size=500, sync_max_records=2000)
    make_report()
    batch = post(client, auth, [vendor(n) for n in range(1000)]).json
    assert batch["created_count"] == 1000
    decoded: list[int] = []
    decode, unpack = outcomes._decode, outcomes._unpack

    def counting(data: bytes) -> list:
        items = decode(data)
        decoded.append(len(items))
        return items

    def counting_unpack(prefix: str, rows: memoryview) -> list:
        items = unpack(prefix, rows)
        decoded.append(len(items))
        return items

    monkeypatch.setattr(outcomes, "_decode", counting)
    monkeypatch.setattr(outcomes, "_unpack", counting_unpack)

    items = _all_pages(client, auth, batch["batch_id"], "results")

    assert [item["index"] for item in items] == list(range(1000))
    assert sum(decoded) == 1000  # 5 pages of 200: each result decoded once, not 500 per page
