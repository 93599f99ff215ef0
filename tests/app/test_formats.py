"""CSV, NDJSON and gzip bodies: the same validation, response and error shapes as JSON."""

from __future__ import annotations

import gzip

import orjson
import pytest

from tests.factories import vendor


def send(client, auth, body: bytes, content_type: str, slug="vendors", gzipped=False, query=""):
    headers = {**auth, "Content-Type": content_type}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return client.post(f"/v1/import/{slug}{query}", data=body, headers=headers)


CSV = (
    "\ufeffSupplier ID, Supplier Name ,Website,Tags,Description\r\n"
    'V-1,"Acme, Inc.",acme.com,"pii, hosting",\r\n'
    'V-2,"Globex ""the"" corp",,,"two\nlines"\r\n'
    "V-3,Initech,,,,extra\r\n"
    "\r\n"
    "V-4\r\n"
).encode("utf-8")


@pytest.mark.parametrize("gzipped", [False, True])
def test_csv(client, auth, make_report, gzipped):
    make_report(
        mapping={
            "external_id": "Supplier ID",
            "name": "Supplier Name",
            "website": "Website",
            "tags": "Tags",
            "description": "Description",
        }
    )
    response = send(client, auth, CSV, "text/csv; charset=utf-8", gzipped=gzipped)
    assert response.status_code == 200
    body = response.json
    assert body["received_count"] == 4
    assert [(r["index"], r["external_id"]) for r in body["results"]] == [(0, "V-1"), (1, "V-2")]
    assert [(e["index"], e["error_code"]) for e in body["errors"]] == [
        (2, "invalid_field_value"),  # more fields than the header
        (3, "missing_required_field"),  # the short row has no name
    ]
    assert body["errors"][0]["message"] == (
        "Row 5 has 6 fields but the header names 5 (a value probably holds an unquoted "
        "comma); the record was not read."
    )
    assert body["errors"][0]["external_id"] == "V-3"
    acme = client.get("/v1/vendors?external_id=V-1", headers=auth).json["items"][0]
    assert (acme["name"], acme["website"], acme["tags"]) == (
        "Acme, Inc.",
        "https://acme.com",
        ["pii", "hosting"],
    )
    globex = client.get("/v1/vendors?external_id=V-2", headers=auth).json["items"][0]
    assert (globex["name"], globex["description"]) == ('Globex "the" corp', "two\nlines")


@pytest.mark.parametrize("gzipped", [False, True])
def test_ndjson(client, auth, make_report, gzipped):
    make_report()
    lines = [
        orjson.dumps(vendor(1)),
        b"",
        orjson.dumps(vendor(2, Extra=1)),
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"Supplier ID": "V-x"}),
    ]
    response = send(
        client, auth, b"\n".join(lines) + b"\n", "application/x-ndjson", gzipped=gzipped
    )
    assert response.status_code == 200
    body = response.json
    assert body["received_count"] == 5
    assert (body["created_count"], body["failed_count"]) == (2, 3)
    assert [(e["index"], e["error_code"]) for e in body["errors"]] == [
        (2, "invalid_field_value"),
        (3, "invalid_field_value"),
        (4, "missing_required_field"),
    ]
    assert body["errors"][0]["message"].startswith("Line 4 is not valid JSON (")
    assert body["errors"][1]["message"] == (
        "Line 5 holds a JSON array, not an object; the record was not read."
    )
    assert [(w["index"], w["field"]) for w in body["warnings"]] == [(1, "Extra")]


def test_gzip_json(client, auth, make_report):
    make_report()
    response = send(
        client, auth, orjson.dumps({"data": [vendor(1)]}), "application/json", gzipped=True
    )
    assert (response.status_code, response.json["created_count"]) == (200, 1)


def test_large_csv_batches_are_validated_by_the_workers_with_the_same_outcome(
    client, auth, make_report, app
):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(sync_max_records=2, chunk_size=2)
    make_report(
        mapping={
            "external_id": "Supplier ID",
            "name": "Supplier Name",
            "website": "Website",
            "tags": "Tags",
            "description": "Description",
        }
    )
    response = send(client, auth, CSV, "text/csv")
    assert response.status_code == 202
    assert [(e["index"], e["error_code"]) for e in response.json["errors"]] == [
        (2, "invalid_field_value")
    ]
    done = client.get(response.headers["Location"], headers=auth).json
    assert [(e["index"], e["error_code"]) for e in done["errors"]] == [
        (2, "invalid_field_value"),
        (3, "missing_required_field"),
    ]
    assert (done["created_count"], done["failed_count"], done["progress"]["processed"]) == (2, 2, 4)


@pytest.mark.parametrize(
    "body, content_type, headers, status, code",
    [
        (b"", "text/csv", {}, 422, "invalid_body"),
        (b"a,b,a\n1,2,3\n", "text/csv", {}, 422, "invalid_body"),
        (b"Supplier ID\n", "text/csv", {}, 422, "invalid_body"),
        ("Supplier ID\nV\u00e9\n".encode("latin-1"), "text/csv", {}, 422, "invalid_body"),
        (b"Supplier ID\nV\n", "text/csv; charset=latin-1", {}, 415, "unsupported_media_type"),
        (b"\n\n", "application/x-ndjson", {}, 422, "invalid_body"),
        (
            b'{"data": []}',
            "application/json",
            {"Content-Encoding": "br"},
            415,
            "unsupported_media_type",
        ),
        (b"not gzip at all", "application/json", {"Content-Encoding": "gzip"}, 422, "invalid_body"),
        (
            gzip.compress(b'{"data": [{"a": 1}]}')[:-8],
            "application/json",
            {"Content-Encoding": "gzip"},
            422,
            "invalid_body",
        ),
        (b"x", "application/xml", {}, 415, "unsupported_media_type"),
    ],
)
def test_unreadable_bodies(client, auth, make_report, body, content_type, headers, status, code):
    make_report()
    response = client.post(
        "/v1/import/vendors", data=body, headers={**auth, "Content-Type": content_type, **headers}
    )
    assert response.status_code == status, response.json
    assert response.json["detail"]["code"] == code


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(client, auth, make_report, app):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(max_body_bytes=10_000)
    make_report()
    bomb = gzip.compress(b'{"data": [' + b'{"a": 1},' * 100_000 + b'{"a": 1}]}')
    assert len(bomb) < 10_000
    response = client.post(
        "/v1/import/vendors",
        data=bomb,
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    assert response.json["detail"]["code"] == "payload_too_large"


def test_too_many_csv_rows_is_413(client, auth, make_report, app):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(max_records=2)
    make_report()
    response = send(client, auth, b"Supplier ID,Supplier Name\n1,a\n2,b\n3,c\n", "text/csv")
    assert (response.status_code, response.json["detail"]["code"]) == (413, "too_many_records")


# --- a value nothing can read fails only its record, in every format ----------------

HUGE = "9" * 401
#: Record 1: a number beyond a double; 2: a 401-digit integer; 3: a lone surrogate;
#: 4: a surrogate pair (a real character); 5: an escaped backslash, then "ud800" (text);
#: 6: a lone surrogate in a field name; 7: a lone low surrogate in a list.
UNREADABLE_JSON = (
    "{"
    '"data": [{"Supplier ID": "J-0", "Supplier Name": "Fine"},'
    ' {"Supplier ID": "J-1", "Supplier Name": "Huge", "IRQ Score": 1e400},'
    f' {{"Supplier ID": "J-2", "Supplier Name": "Long", "IRQ Score": -{HUGE}}},'
    ' {"Supplier ID": "J-3", "Supplier Name": "\\ud800 alone"},'
    ' {"Supplier ID": "J-4", "Supplier Name": "Pair \\ud83d\\ude00"},'
    ' {"Supplier ID": "J-5", "Supplier Name": "Text \\\\ud800"},'
    ' {"Supplier ID": "J-6", "Supplier Name": "Key", "\\udfff": 1},'
    ' {"Supplier ID": "J-7", "Supplier Name": "List", "Tags": ["a", "\\udc00"]}],'
    ' "note": "\\ud800"'
    "}"
).encode()


@pytest.mark.parametrize("deferred", [False, True], ids=["validated here", "by the workers"])
def test_a_json_record_nothing_can_read_fails_alone_naming_its_field(
    client, auth, make_report, app, deferred
):
    if deferred:
        services = app.extensions["importer"]
        services.settings = services.settings.replace(sync_max_records=2, chunk_size=3)
    make_report()
    response = send(client, auth, UNREADABLE_JSON, "application/json")
    assert response.status_code in (200, 202), response.json
    batch_id = response.json["batch_id"]
    body = client.get(f"/v1/import/batches/{batch_id}", headers=auth).json  # as the workers left it
    assert (body["received_count"], body["created_count"], body["failed_count"]) == (8, 3, 5)
    assert [r["external_id"] for r in body["results"]] == ["J-0", "J-4", "J-5"]
    assert [(e["index"], e["external_id"], e["field"]) for e in body["errors"]] == [
        (1, "J-1", "IRQ Score"),
        (2, "J-2", "IRQ Score"),
        (3, "J-3", "Supplier Name"),
        (6, "J-6", None),
        (7, "J-7", "Tags"),
    ]
    assert {e["error_code"] for e in body["errors"]} == {"invalid_field_value"}
    messages = [e["message"] for e in body["errors"]]
    assert messages[0] == (
        "Record 1 holds a number out of range in field 'IRQ Score' (1e400; numbers must lie "
        "within +/-1.8e308); the record was not read."
    )
    assert "(-99999999999..., 402 characters;" in messages[1]
    assert messages[2] == (
        "Record 3 holds a lone surrogate in field 'Supplier Name' (\\ud800, which is not a "
        "character); the record was not read."
    )
    assert "in a field name (\\udfff" in messages[3]
    names = {
        item["external_id"]: item["name"]
        for item in client.get("/v1/vendors", headers=auth).json["items"]
    }
    assert names == {"J-0": "Fine", "J-4": "Pair \U0001f600", "J-5": "Text \\ud800"}


def test_an_ndjson_line_nothing_can_read_fails_alone_naming_its_field(client, auth, make_report):
    make_report()
    lines = [
        b'{"Supplier ID": "N-0", "Supplier Name": "Fine"}',
        b'{"Supplier ID": "N-1", "Supplier Name": "Huge", "IRQ Score": ' + HUGE.encode() + b"}",
        b'{"Supplier ID": "N-2", "Supplier Name": "\\udc00"}',
        b"[1e400]",
    ]
    response = send(client, auth, b"\n".join(lines), "application/x-ndjson")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["created_count"] == 1
    assert [(e["index"], e["external_id"], e["field"]) for e in body["errors"]] == [
        (1, "N-1", "IRQ Score"),
        (2, "N-2", "Supplier Name"),
        (3, None, None),
    ]
    assert body["errors"][0]["message"].startswith(
        "Line 2 holds a number out of range in field 'IRQ Score' (999999999999..., 401 characters"
    )
    assert body["errors"][2]["message"] == (
        "Line 4 holds a JSON array, not an object; the record was not read."
    )


def test_a_csv_value_out_of_range_fails_only_its_field(client, auth, make_report):
    make_report()
    csv = f"Supplier ID,Supplier Name,IRQ Score\r\nC-0,Fine,5\r\nC-1,Huge,1e400\r\n{HUGE},Long,\r\n"
    response = send(client, auth, csv.encode(), "text/csv")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["created_count"] == 1
    assert [(e["index"], e["field"], e["error_code"]) for e in body["errors"]] == [
        (1, "IRQ Score", "invalid_field_value"),
        (2, "Supplier ID", "invalid_field_value"),
    ]
    assert "got '1e400'" in body["errors"][0]["message"]
    assert "at most 255 characters, got 401" in body["errors"][1]["message"]
