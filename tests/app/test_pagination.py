"""Every list pages by cursor: all of it once, in order, at any depth; a bad cursor
or a deep offset is a 422; ``total`` is exact where it is kept, bounded elsewhere."""

from __future__ import annotations

import base64
import datetime as dt
import json

import orjson
import pytest
import sqlalchemy as sa

from importer import listing
from importer.models import OBJECT_TABLES, ObjectCount
from tests.factories import vendor


def make_webhook(client, auth, url):
    body = {"url": url, "events": ["Import.Completed", "Import.Failed"], "secret": "s" * 32}
    response = client.post("/v1/webhooks", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def post(client, auth, records, slug="vendors", **headers):
    return client.post(f"/v1/import/{slug}", json={"data": records}, headers={**auth, **headers})


def walk(client, auth, url, limit):
    """Every page of a list by cursor: (items, pages)."""
    sep = "&" if "?" in url else "?"
    pages = [client.get(f"{url}{sep}limit={limit}", headers=auth).json]
    while pages[-1]["next_cursor"] is not None:
        cursor = pages[-1]["next_cursor"]
        response = client.get(f"{url}{sep}limit={limit}&cursor={cursor}", headers=auth)
        assert response.status_code == 200, response.json
        pages.append(response.json)
    return [item for page in pages for item in page["items"]], pages


def assert_walk_matches_offsets(client, auth, url, limit, key):
    """The cursor walk reads what offset pages read, each item once; each page's
    offset is its position; the last page (only) has no next_cursor."""
    items, pages = walk(client, auth, url, limit)
    sep = "&" if "?" in url else "?"
    everything = client.get(f"{url}{sep}limit=200", headers=auth).json["items"]
    assert [key(item) for item in items] == [key(item) for item in everything]
    assert len({key(item) for item in items}) == len(items)
    assert [page["offset"] for page in pages] == list(range(0, len(items) or 1, limit))
    assert all(page["next_cursor"] for page in pages[:-1]) and pages[-1]["next_cursor"] is None
    assert all(page["total"] == len(items) for page in pages)
    assert not any(page["total_is_lower_bound"] for page in pages)
    return items


def test_objects_walk_by_cursor_oldest_first(client, auth, make_report, db):
    make_report()
    for start in range(0, 12, 4):
        post(client, auth, [vendor(n) for n in range(start, start + 4)])
    items = assert_walk_matches_offsets(client, auth, "/v1/vendors", 5, lambda i: i["id"])
    assert len(items) == 12
    # Oldest first: batch by batch (within one, by id).
    names = [item["external_id"] for item in items]
    assert [set(names[n : n + 4]) for n in (0, 4, 8)] == [
        {f"V-{n:05d}" for n in range(start, start + 4)} for start in (0, 4, 8)
    ]


def test_updated_since_walks_by_update_time(client, auth, make_report, db):
    """Changed since T is ordered by (updated_at, id): an object updated later comes
    after one created later but not updated since."""
    make_report()
    post(client, auth, [vendor(n) for n in range(6)])
    table = OBJECT_TABLES["vendor"]
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with db.session() as session:
        for n in range(6):
            # V-00000 changed last, V-00005 first; V-00002 and V-00003 at the same time.
            moment = base + dt.timedelta(seconds=10 * (5 - n) if n not in (2, 3) else 25)
            session.execute(
                sa.update(table)
                .where(table.c.external_id == f"V-{n:05d}")
                .values(updated_at=moment)
            )
    since = int(base.timestamp()) + 15
    items = assert_walk_matches_offsets(
        client, auth, f"/v1/vendors?updated_since={since}", 2, lambda i: i["id"]
    )
    tied = sorted(item["id"] for item in items if item["external_id"] in ("V-00002", "V-00003"))
    assert [item["external_id"] for item in items][-2:] == ["V-00001", "V-00000"]
    assert [item["id"] for item in items[:2]] == tied
    assert {item["external_id"] for item in items} == {f"V-{n:05d}" for n in range(4)}


def test_batches_reports_webhooks_walk_by_cursor(client, auth, make_report, worker):
    for n in range(5):
        make_report(slug=f"feed-{n}")
    for n in range(7):
        post(client, auth, [vendor(n)], slug=f"feed-{n % 2}")
    for n in range(3):
        make_webhook(client, auth, f"https://example.com/h{n}")

    batches = assert_walk_matches_offsets(
        client, auth, "/v1/import/batches", 3, lambda i: i["batch_id"]
    )
    assert [b["received_at"] for b in batches] == sorted(
        (b["received_at"] for b in batches), reverse=True
    )
    filtered = assert_walk_matches_offsets(
        client, auth, "/v1/import/batches?slug=feed-0", 2, lambda i: i["batch_id"]
    )
    assert len(filtered) == 4 and {b["slug"] for b in filtered} == {"feed-0"}
    reports = assert_walk_matches_offsets(
        client, auth, "/v1/import-reports", 2, lambda i: i["slug"]
    )
    assert [r["slug"] for r in reports] == [f"feed-{n}" for n in range(5)]
    hooks = assert_walk_matches_offsets(client, auth, "/v1/webhooks", 2, lambda i: i["id"])
    assert [h["url"] for h in hooks] == [f"https://example.com/h{n}" for n in range(3)]


def test_deliveries_walk_newest_first(client, auth, make_report, worker):
    make_report()
    hook = make_webhook(client, auth, "https://example.com/h")
    for n in range(5):
        post(client, auth, [vendor(n)])
    items = assert_walk_matches_offsets(
        client, auth, f"/v1/webhooks/{hook['id']}/deliveries", 2, lambda i: i["id"]
    )
    assert len(items) == 5
    assert [d["created_at"] for d in items] == sorted(
        (d["created_at"] for d in items), reverse=True
    )


def test_batch_results_and_errors_walk_by_cursor_across_chunks(client, auth, make_report, app):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(chunk_size=10, inline_items=5)
    make_report()
    # Every 7th record fails, twice (two fields): two errors of one record may be split
    # over two pages.
    records = [
        vendor(n) if n % 7 else {"Supplier ID": f"X-{n}", "Website": "not a url"}
        for n in range(1, 38)
    ]
    body = post(client, auth, records).json
    url = f"/v1/import/batches/{body['batch_id']}"
    results = assert_walk_matches_offsets(client, auth, f"{url}/results", 4, lambda i: i["index"])
    assert [r["index"] for r in results] == [i for i in range(37) if (i + 1) % 7]
    errors, pages = walk(client, auth, f"{url}/errors", 3)
    assert len(errors) == body["errors_total"] == 10
    assert [(e["index"], e["field"]) for e in errors] == sorted(
        (e["index"], e["field"]) for e in errors
    )
    assert len(pages) == 4 and pages[-1]["offset"] == 9


@pytest.mark.parametrize(
    "url", ["/v1/vendors", "/v1/import/batches", "/v1/import-reports", "/v1/webhooks"]
)
def test_an_offset_over_ten_thousand_is_refused_and_points_to_the_cursor(client, auth, url):
    assert client.get(f"{url}?offset=10000", headers=auth).status_code == 200
    response = client.get(f"{url}?offset=10001", headers=auth)
    assert response.status_code == 422
    assert response.json["detail"]["code"] == "invalid_parameter"
    assert "cursor" in response.json["detail"]["message"]


def _cursor(parts):
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).rstrip(b"=").decode()


def test_a_bad_cursor_is_a_422_never_a_500(client, auth, make_report, make_org):
    make_report()
    post(client, auth, [vendor(n) for n in range(3)])
    post(client, auth, [vendor(n) for n in range(3, 6)])
    first = client.get("/v1/vendors?limit=2", headers=auth).json
    good = first["next_cursor"]
    assert client.get(f"/v1/vendors?limit=2&cursor={good}", headers=auth).status_code == 200
    version, scope, offset, micros, last_id = orjson.loads(
        base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    )
    batches = client.get("/v1/import/batches?limit=1", headers=auth).json
    _, other_key = make_org("Other")
    other = {"Authorization": f"Bearer {other_key}"}
    bad = {
        "garbage": "not-a-cursor!",
        "not base64 json": "Zm9vYmFy",
        "truncated": good[:-3],
        "a cursor of the batches list": batches["next_cursor"],
        "same list, other filter": client.get(
            "/v1/vendors?limit=2&updated_since=0", headers=auth
        ).json["next_cursor"],
        "another version": _cursor([version + 1, scope, offset, micros, last_id]),
        "offset of the wrong type": _cursor([version, scope, "2", micros, last_id]),
        "negative offset": _cursor([version, scope, -1, micros, last_id]),
        "time out of range": _cursor([version, scope, offset, 10**20, last_id]),
        "time of the wrong type": _cursor([version, scope, offset, True, last_id]),
        "id of the wrong type": _cursor([version, scope, offset, micros, 7]),
        "key part missing": _cursor([version, scope, offset, micros]),
        "an object": _cursor({"offset": 2}),
        "huge": "A" * 5000,
        "non-ascii": "é",
    }
    for what, cursor in bad.items():
        response = client.get("/v1/vendors", query_string={"cursor": cursor}, headers=auth)
        assert response.status_code == 422, what
        assert response.json["detail"]["code"] == "invalid_parameter", what
    # Another org's key with this org's cursor: refused, not a window on anything.
    response = client.get(f"/v1/vendors?cursor={good}", headers=other)
    assert response.status_code == 422
    both = client.get(f"/v1/vendors?cursor={good}&offset=2", headers=auth)
    assert (both.status_code, both.json["detail"]["code"]) == (422, "invalid_parameter")


def test_object_total_is_the_maintained_count(client, auth, make_report, db, org_and_key):
    """Created objects are counted once, when written: updates, failures and dry runs
    add nothing; the count matches the table."""
    make_report()
    post(client, auth, [vendor(n) for n in range(4)])
    post(client, auth, [vendor(n) for n in range(2, 7)])  # 2 updates, 3 new
    client.post(
        "/v1/import/vendors?dry_run=true", json={"data": [vendor(20), vendor(1)]}, headers=auth
    )
    post(client, auth, [{"Supplier ID": "broken"}])
    assert client.get("/v1/vendors", headers=auth).json["total"] == 7
    table = OBJECT_TABLES["vendor"]
    org = org_and_key[0]
    with db.session() as session:
        stored = session.scalar(sa.select(ObjectCount.count).where(ObjectCount.org_id == org.id))
        rows = session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.org_id == org.id)
        )
    assert stored == rows == 7


def test_a_total_past_the_bound_says_it_is_a_lower_bound(client, auth, make_report, monkeypatch):
    make_report()
    for n in range(5):
        post(client, auth, [vendor(n)])
    monkeypatch.setattr(listing, "COUNT_BOUND", 3)
    page = client.get("/v1/import/batches?limit=2", headers=auth).json
    assert (page["total"], page["total_is_lower_bound"]) == (3, True)
    exact = client.get("/v1/import/batches?limit=2&status=failed", headers=auth).json
    assert (exact["total"], exact["total_is_lower_bound"]) == (0, False)
    # The object list's total is kept, not counted: exact at any size.
    objects = client.get("/v1/vendors?limit=2", headers=auth).json
    assert (objects["total"], objects["total_is_lower_bound"]) == (5, False)
