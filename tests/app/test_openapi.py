"""The OpenAPI document: served without auth, valid, describing every endpoint and each
status code it can answer; and the API agrees with it (schemathesis over the WSGI app,
against real reports, batches and objects: the run is defined in
tests/app/api_properties.py, which tests/integration/test_properties_postgres.py
collects too)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import schemathesis
import sqlalchemy as sa
from fakeredis import FakeRedis
from openapi_spec_validator import validate as validate_openapi
from schemathesis.checks import not_a_server_error

from app.ratelimits import RateLimits
from importer import catalog, retention
from importer.db import utcnow
from importer.models import BatchStatus, ImportBatch
from tests.app.api_properties import (  # noqa: F401 (fixtures and a test, collected here)
    CHECKS,
    _node_id_for_schemathesis,
    api_schema,
    test_api_conforms_to_its_document,
)
from tests.factories import FLASK_ARGUMENT, WEBHOOK, limits_storage, vendor

IMPORT = "/v1/import/{slug}"

# Every status code each operation can answer (the 401, 429 and 503 of every /v1
# operation come from authentication, the org's request-rate limit and the backing
# services).
STATUS_CODES = {
    ("post", "/v1/import-reports"): {201, 401, 409, 413, 415, 422, 429, 503},
    ("get", "/v1/import-reports"): {200, 401, 422, 429, 503},
    ("get", "/v1/import-reports/{slug}"): {200, 401, 404, 422, 429, 503},
    ("patch", "/v1/import-reports/{slug}"): {200, 401, 404, 409, 413, 415, 422, 429, 503},
    ("delete", "/v1/import-reports/{slug}"): {204, 401, 404, 422, 429, 503},
    ("post", "/v1/import/{slug}"): {200, 202, 400, 401, 404, 409, 413, 415, 422, 429, 503},
    ("get", "/v1/import/batches"): {200, 401, 422, 429, 503},
    ("get", "/v1/import/batches/{batch_id}"): {200, 401, 404, 422, 429, 503},
    **{
        ("get", f"/v1/import/batches/{{batch_id}}/{kind}"): {
            200,
            401,
            404,
            409,
            410,
            422,
            429,
            503,
        }
        for kind in ("results", "errors", "warnings")
    },
    **{
        ("get", f"/v1/{base.plural}"): {200, 401, 422, 429, 503}
        for base in catalog.CATALOG.values()
    },
    **{
        ("get", f"/v1/{base.plural}/{{object_id}}"): {200, 401, 404, 422, 429, 503}
        for base in catalog.CATALOG.values()
    },
    ("post", "/v1/webhooks"): {201, 401, 413, 415, 422, 429, 503},
    ("get", "/v1/webhooks"): {200, 401, 422, 429, 503},
    ("get", "/v1/webhooks/{webhook_id}"): {200, 401, 404, 422, 429, 503},
    ("delete", "/v1/webhooks/{webhook_id}"): {204, 401, 404, 422, 429, 503},
    ("get", "/v1/webhooks/{webhook_id}/deliveries"): {200, 401, 404, 422, 429, 503},
    ("get", "/healthz"): {200},
    ("get", "/readyz"): {200, 503},
    ("get", "/metrics"): {200, 401},
    ("get", "/openapi.json"): {200},
}


@pytest.fixture
def document(client) -> dict[str, Any]:
    response = client.get("/openapi.json")  # no Authorization header
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.json


def resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        *_, section, name = item["$ref"].split("/")
        item = document["components"][section][name]
    return item


def operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def parameters(document: dict[str, Any], operation: dict[str, Any], where: str):
    return {
        parameter["name"]: parameter
        for parameter in (resolve(document, p) for p in operation.get("parameters", []))
        if parameter["in"] == where
    }


def test_document_is_a_valid_openapi_3_document(document):
    assert document["openapi"].startswith("3.")
    validate_openapi(document)


def test_the_served_document_is_the_committed_one(client):
    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    first = client.get("/openapi.json")
    assert first.status_code == 200 and first.mimetype == "application/json"
    assert client.get("/openapi.json").data == first.data
    assert json.loads(first.data) == json.loads(committed.read_bytes())


def test_every_url_rule_is_documented_with_each_status_code(app, document):
    expected_paths = set()
    for rule in app.url_map.iter_rules():
        if rule.rule == "/ops" or rule.rule.startswith("/ops/"):
            continue  # the operator console, not part of the API (README: The ops page)
        path = FLASK_ARGUMENT.sub(r"{\1}", rule.rule)
        expected_paths.add(path)
        assert path in document["paths"], f"{rule.rule} ({rule.endpoint}) is not documented"
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = document["paths"][path].get(method.lower())
            assert operation is not None, f"{method} {path} is not documented"
            assert set(parameters(document, operation, "path")) == set(rule.arguments)
            codes = {int(code) for code in operation["responses"]}
            assert codes == STATUS_CODES[(method.lower(), path)], f"{method} {path}"
            if path.startswith("/v1/"):
                assert operation["security"] == [{"bearerAuth": []}]
            else:
                assert "security" not in operation
    assert set(document["paths"]) == expected_paths
    assert {(m, p) for m, p, _ in operations(document)} == set(STATUS_CODES)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An org's API key (ak_...).",
    }


def test_errors_use_the_envelope_and_every_response_names_its_headers(document):
    for method, path, operation in operations(document):
        for code, response in operation["responses"].items():
            response = resolve(document, response)
            assert "X-Request-ID" in response["headers"], f"{method} {path} {code}"
            content = response.get("content", {}).get("application/json", {})
            if code == "204":
                assert not content
            elif path.startswith("/v1/") and int(code) >= 400 and (path, code) != (IMPORT, "400"):
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path)
            if path.startswith("/v1/") and code == "401":
                assert "WWW-Authenticate" in response["headers"]
    envelope = document["components"]["schemas"]["ErrorDetail"]
    assert envelope["required"] == ["code", "message"]
    assert set(envelope["properties"]) == {"code", "message", "errors"}


def test_headers_and_parameters_are_documented(document):
    paths = document["paths"]
    created = paths["/v1/import-reports"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]
    imported = paths["/v1/import/{slug}"]["post"]
    assert "Location" in imported["responses"]["202"]["headers"]
    assert {"Idempotency-Key", "Prefer"} <= set(parameters(document, imported, "header"))
    assert parameters(document, imported, "query")["dry_run"]["schema"]["type"] == "boolean"
    assert set(imported["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "text/csv",
    }
    key = parameters(document, imported, "header")["Idempotency-Key"]["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    assert imported["requestBody"]["required"] is True
    body = resolve(document, imported["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"]["data"]["minItems"] == 1
    # The most records is a setting: named, not a number (the document is the same
    # for every deployment).
    assert "maxItems" not in body["properties"]["data"]
    assert "IMPORTER_MAX_RECORDS" in body["properties"]["data"]["description"]

    batch = paths["/v1/import/batches/{batch_id}"]["get"]
    assert "wait" in parameters(document, batch, "query")
    batches = parameters(document, paths["/v1/import/batches"]["get"], "query")
    assert {"status", "slug"} <= set(batches)
    assert batches["status"]["schema"]["enum"] == ["queued", "processing", "completed", "failed"]
    for base in catalog.CATALOG.values():
        listed = parameters(document, paths[f"/v1/{base.plural}"]["get"], "query")
        assert {"external_id", "updated_since"} <= set(listed)

    lists = [
        (method, path, operation)
        for method, path, operation in operations(document)
        if "200" in operation["responses"]
        and "Page" in str(operation["responses"]["200"].get("content"))
    ]
    assert len(lists) == 2 + 3 + len(catalog.CATALOG) + 2
    for _method, path, operation in lists:
        query = parameters(document, operation, "query")
        assert query["limit"]["schema"]["minimum"] == 1, path
        assert query["limit"]["schema"]["maximum"] == 200, path
        assert query["offset"]["schema"]["minimum"] == 0, path


def test_any_request_id_is_accepted_and_replaced_as_documented(app, client, document):
    """The service never refuses an X-Request-ID: one that does not fit is replaced by a
    generated one. So the document sets no pattern on the request header (schemathesis'
    negative cases with a 'wrong' id would otherwise expect a refusal), only on the
    response header, which always fits."""
    for method, path, operation in operations(document):
        header = parameters(document, operation, "header")["X-Request-ID"]
        assert "pattern" not in header["schema"], (method, path)
    assert document["components"]["headers"]["RequestId"]["schema"]["pattern"]
    sent = "not a valid id!"
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] != sent
    operation = schemathesis.openapi.from_wsgi("/openapi.json", app)["/healthz"]["GET"]
    operation.Case(headers={"X-Request-ID": sent}).validate_response(response, checks=CHECKS)


def test_base_object_schemas_follow_the_catalog(document):
    schemas = document["components"]["schemas"]
    for base in catalog.CATALOG.values():
        schema = schemas[base.name.title()]
        references = [spec.reference_column for spec in base.references]
        assert set(schema["properties"]) == {
            "id",
            *base.field_names,
            *references,
            "created_at",
            "updated_at",
        }
        assert set(schema["required"]) == set(schema["properties"])
        for spec in base.fields:
            assert schema["properties"][spec.name].get("nullable", False) is not spec.required
            if spec.kind is catalog.Kind.DATE:
                assert schema["properties"][spec.name]["type"] == "integer"
        page = schemas[f"{base.name.title()}Page"]
        assert page["properties"]["items"]["items"] == {
            "$ref": f"#/components/schemas/{base.name.title()}"
        }


# --- every status code, answered for real and checked against the document ----------

README_REPORT = {
    "slug": "supplier-feed",
    "report_name": "Supplier feed",
    "base_object": "vendor",
    "mapping": {"external_id": "Supplier ID", "name": "Supplier Name", "website": "Website"},
    "required": ["website"],
}
GOOD = {"data": [vendor(1), vendor(2, Region="EMEA"), {"Supplier Name": "no id"}]}
BAD = {"data": [{"Supplier Name": "no id"}]}


def _break_broker(app):
    def down():
        raise ConnectionError("broker down")

    app.extensions["importer"].check_broker = down


def _shrink_body_limit(app):
    app.config["MAX_CONTENT_LENGTH"] = 2048


def _batches_running(app):
    """Every batch back to processing (a stream of its lists is refused until done)."""
    with app.extensions["importer"].db.session() as session:
        session.execute(sa.update(ImportBatch).values(status=BatchStatus.PROCESSING))


class _Spent(RateLimits):
    """Real rate limits whose budget the org has just spent (on its first check)."""

    def check_request(self, org_id):
        if self.requests is not None:
            self._moving.hit(self.requests, "requests", org_id, cost=self.requests.amount)
        super().check_request(org_id)

    def check_records(self, org_id, count):
        if self.records is not None:
            self._sliding.hit(self.records, "records", org_id, cost=self.records.amount)
        super().check_records(org_id, count)


def _spent_request_rate(app):
    app.extensions["importer"].rate_limits = _Spent(limits_storage(FakeRedis()), 5, 0)


def _spent_record_rate(app):
    app.extensions["importer"].rate_limits = _Spent(limits_storage(FakeRedis()), 0, 100)


def _small_record_rate(app):
    app.extensions["importer"].rate_limits = RateLimits(limits_storage(FakeRedis()), 0, 2)


def _purge_details(app):
    """31 days on: the finished batches' per-record details are purged."""
    services = app.extensions["importer"]
    retention.purge(services.db, services.settings, now=utcnow() + dt.timedelta(days=31))


def _metrics_token(app):
    app.config["SETTINGS"] = app.config["SETTINGS"].replace(metrics_token="s3cret")


def answer(label: str, url: str, status: int, change=None, **request: Any):
    """A request (``url`` may name ``{batch_id}``, ``{vendor}``, ``{service}`` and
    ``{assessment}``: seeded ids) and the status it must get; ``change`` prepares the
    app first (a broken broker, a small body limit)."""
    return pytest.param(label, url, status, change, request, id=f"{label} {status} {url}")


R, IMP, B = "/v1/import-reports", "/v1/import/vendors", "/v1/import/batches/{batch_id}"
W, WH = "/v1/webhooks", "/v1/webhooks/{webhook_id}"
TEXT = {"data": "x", "content_type": "text/plain"}
NDJSON = '{"Supplier ID": "N-1", "Supplier Name": "Line one"}\nnot json\n'
CSV = "Supplier ID,Supplier Name,Region\r\nC-1,Row one,EMEA\r\n"
GZIPPED_JSON = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
NO_KEY = {"Authorization": ""}
LONG_NAME = {"report_name": "x" * 4096}

ANSWERS = [
    answer(f"POST {R}", R, 201, json=README_REPORT),
    answer(f"POST {R}", R, 409, json={**README_REPORT, "slug": "vendors"}),
    answer(f"POST {R}", R, 413, _shrink_body_limit, json={**README_REPORT, **LONG_NAME}),
    answer(f"POST {R}", R, 415, **TEXT),
    answer(f"POST {R}", R, 422, json={"slug": "x"}),
    answer(f"POST {R}", R, 422, json={**README_REPORT, "mapping": {"nope": "X"}}),
    answer(f"POST {R}", R, 422, json={**README_REPORT, "mapping": {"name": "Supplier\x00"}}),
    answer(f"POST {R}", R, 401, json=README_REPORT, headers=NO_KEY),
    answer(f"GET {R}", f"{R}?limit=1&offset=1", 200),
    answer(f"GET {R}", f"{R}?limit=0", 422),
    answer(f"GET {R}/{{slug}}", f"{R}/vendors", 200),
    answer(f"GET {R}/{{slug}}", f"{R}/nope", 404),
    answer(f"GET {R}/{{slug}}", f"{R}/a%00b", 422),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 200, json={"report_name": "Renamed"}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 200, json={"required": ["website"]}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/services", 409, json={"slug": "vendors"}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 413, _shrink_body_limit, json=LONG_NAME),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 415, **TEXT),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 422, json={"mapping": {}}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors", 422, json={"report_name": "a\x00"}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/vendors%00", 422, json={}),
    answer(f"PATCH {R}/{{slug}}", f"{R}/nope", 404, json={}),
    answer(f"DELETE {R}/{{slug}}", f"{R}/assessments", 204),
    answer(f"DELETE {R}/{{slug}}", f"{R}/nope", 404),
    answer(f"DELETE {R}/{{slug}}", f"{R}/vendors%00", 422),
    answer("POST /v1/import/{slug}", IMP, 200, json=GOOD),
    answer("POST /v1/import/{slug}", f"{IMP}?dry_run=true", 200, json=GOOD),
    answer("POST /v1/import/{slug}", f"{IMP}?dry_run=maybe", 422, json=GOOD),
    answer("POST /v1/import/{slug}", IMP, 200, data=NDJSON, content_type="application/x-ndjson"),
    answer("POST /v1/import/{slug}", IMP, 200, data=CSV, content_type="text/csv"),
    answer("POST /v1/import/{slug}", IMP, 400, data="{}\n[]\n", content_type="application/jsonl"),
    answer(
        "POST /v1/import/{slug}",
        IMP,
        200,
        data=gzip.compress(orjson.dumps(GOOD)),
        content_type="application/json",
        headers={"Content-Encoding": "gzip"},
    ),
    answer("POST /v1/import/{slug}", IMP, 422, data=b"nope", headers=GZIPPED_JSON),
    answer("POST /v1/import/{slug}", IMP, 415, json=GOOD, headers={"Content-Encoding": "br"}),
    answer("POST /v1/import/{slug}", IMP, 202, json=GOOD, headers={"Prefer": "respond-async"}),
    answer("POST /v1/import/{slug}", IMP, 400, json=BAD),
    answer("POST /v1/import/{slug}", "/v1/import/nope", 404, json=GOOD),
    answer("POST /v1/import/{slug}", "/v1/import/a%00b", 422, json=GOOD),
    answer("POST /v1/import/{slug}", IMP, 413, _shrink_body_limit, json={"data": [LONG_NAME]}),
    answer("POST /v1/import/{slug}", IMP, 415, **TEXT),
    answer("POST /v1/import/{slug}", IMP, 422, json={"data": []}),
    answer("POST /v1/import/{slug}", IMP, 422, json=GOOD, headers={"Idempotency-Key": "k" * 256}),
    answer("POST /v1/import/{slug}", IMP, 503, _break_broker, json=GOOD),
    answer("POST /v1/import/{slug}", IMP, 429, _spent_record_rate, json=GOOD),
    answer("POST /v1/import/{slug}", IMP, 413, _small_record_rate, json=GOOD),
    answer("GET /v1/import/batches", "/v1/import/batches", 429, _spent_request_rate),
    answer("GET /v1/import/batches", "/v1/import/batches?status=completed&slug=vendors", 200),
    answer("GET /v1/import/batches", "/v1/import/batches?status=done", 422),
    answer("GET /v1/import/batches", "/v1/import/batches?slug=%00", 422),
    answer("GET /v1/import/batches/{batch_id}", f"{B}?wait=1", 200),
    answer("GET /v1/import/batches/{batch_id}", f"{B}?wait=-1", 422),
    answer("GET /v1/import/batches/{batch_id}", "/v1/import/batches/cbbatch_404", 404),
    answer("GET /v1/import/batches/{batch_id}", "/v1/import/batches/cbbatch_%00", 422),
    *(
        answer(f"GET /v1/import/batches/{{batch_id}}/{kind}", f"{B}/{kind}{query}", status)
        for kind in ("results", "errors", "warnings")
        for query, status in (
            ("?limit=200", 200),
            ("?offset=-1", 422),
            ("?offset=10001", 422),
            ("?cursor=bad", 422),
        )
    ),
    *(
        answer(f"GET /v1/import/batches/{{batch_id}}/{kind}", f"{B}/{kind}", 410, _purge_details)
        for kind in ("results", "errors", "warnings")
    ),
    answer("GET /v1/import/batches/{batch_id}", B, 200, _purge_details),
    *(
        answer(
            f"GET /v1/import/batches/{{batch_id}}/{kind}",
            f"{B}/{kind}",
            status,
            change,
            headers={"Accept": accept},
        )
        for kind in ("results", "errors", "warnings")
        for accept in ("application/x-ndjson", "text/csv")
        for status, change in ((200, None), (409, _batches_running))
    ),
    *(
        answer(f"GET /v1/import/batches/{{batch_id}}/{kind}", f"/v1/import/batches/x/{kind}", 404)
        for kind in ("results", "errors", "warnings")
    ),
    *(
        answer(f"GET /v1/{base.plural}", f"/v1/{base.plural}{query}", status)
        for base in catalog.CATALOG.values()
        for query, status in (
            ("?updated_since=0&limit=3", 200),
            ("?external_id=nope", 200),
            ("?updated_since=soon", 422),
            ("?cursor=bad", 422),
            ("?external_id=a%00b", 422),
        )
    ),
    *(
        answer(f"GET /v1/{base.plural}/{{object_id}}", f"/v1/{base.plural}/{{{base.name}}}", 200)
        for base in catalog.CATALOG.values()
    ),
    *(
        answer(f"GET /v1/{base.plural}/{{object_id}}", f"/v1/{base.plural}/{base.id_prefix}_x", 404)
        for base in catalog.CATALOG.values()
    ),
    *(
        answer(
            f"GET /v1/{base.plural}/{{object_id}}", f"/v1/{base.plural}/{base.id_prefix}_%00", 422
        )
        for base in catalog.CATALOG.values()
    ),
    answer(f"POST {W}", W, 201, json=WEBHOOK),
    answer(f"POST {W}", W, 413, _shrink_body_limit, json={**WEBHOOK, "secret": "s" * 4096}),
    answer(f"POST {W}", W, 415, **TEXT),
    answer(f"POST {W}", W, 422, json={**WEBHOOK, "url": "ftp://example.com/hooks"}),
    answer(f"POST {W}", W, 422, json={**WEBHOOK, "events": ["Import.Started"]}),
    answer(f"POST {W}", W, 422, json={**WEBHOOK, "url": "http://169.254.169.254/latest/"}),
    answer(f"POST {W}", W, 422, json={**WEBHOOK, "secret": WEBHOOK["secret"] + "\x00"}),
    answer(f"GET {W}", f"{W}?limit=1&offset=1", 200),
    answer(f"GET {W}", f"{W}?limit=201", 422),
    answer(f"GET {WH}", WH, 200),
    answer(f"GET {WH}", f"{W}/cbwhk_x", 404),
    answer(f"GET {WH}", f"{W}/cbwhk_%00", 422),
    answer(f"DELETE {WH}", WH, 204),
    answer(f"DELETE {WH}", f"{W}/nope", 404),
    answer(f"DELETE {WH}", f"{W}/cbwhk_%00", 422),
    answer(f"GET {WH}/deliveries", f"{WH}/deliveries?limit=2", 200),
    answer(f"GET {WH}/deliveries", f"{WH}/deliveries?offset=-1", 422),
    answer(f"GET {WH}/deliveries", f"{W}/cbwhk_x/deliveries", 404),
    answer(f"GET {WH}/deliveries", f"{W}/cbwhk_%00/deliveries", 422),
    answer("GET /healthz", "/healthz", 200),
    answer("GET /readyz", "/readyz", 200),
    answer("GET /readyz", "/readyz", 503, _break_broker),
    answer("GET /metrics", "/metrics", 200),
    answer("GET /metrics", "/metrics", 401, _metrics_token),
    answer("GET /openapi.json", "/openapi.json", 200),
]


@pytest.mark.parametrize("label, url, status, change, request_kwargs", ANSWERS)
def test_each_answer_conforms_to_the_document(
    app, client, auth, seeded, label, url, status, change, request_kwargs
):
    document = schemathesis.openapi.from_wsgi("/openapi.json", app)
    known = seeded["known"]
    url = url.format(
        batch_id=known["batch_id"][0],
        webhook_id=known["webhook_id"][0],
        **{
            base.name: known[f"/v1/{base.plural}/{{object_id}}"][0]
            for base in catalog.CATALOG.values()
        },
    )
    if change is not None:
        change(app)
    method, _, path = label.partition(" ")
    request_kwargs = dict(request_kwargs)
    headers = {**auth, **request_kwargs.pop("headers", {})}
    response = client.open(url, method=method, headers=headers, **request_kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    _endpoint, path_parameters = app.url_map.bind("localhost").match(url.partition("?")[0], method)
    case = document[path][method].Case(path_parameters=path_parameters)
    # A 503 here is one the test caused on purpose: only its shape is checked.
    checks = [check for check in CHECKS if status < 500 or check is not not_a_server_error]
    case.validate_response(response, checks=checks)


def test_every_documented_status_code_is_answered_above():
    answered = {(param.values[0], param.values[2]) for param in ANSWERS}
    # Not produced above: a 409 needs two requests racing on one Idempotency-Key, and a
    # 503 of a read needs the database down (both are covered by tests/app and the
    # fault tests).
    unproduced = {("POST /v1/import/{slug}", 409)} | {
        (f"{method.upper()} {path}", 503)
        for (method, path), codes in STATUS_CODES.items()
        if 503 in codes and (method, path) != ("post", "/v1/import/{slug}") and path != "/readyz"
    }
    documented = {
        (f"{method.upper()} {path}", code)
        for (method, path), codes in STATUS_CODES.items()
        for code in codes
    }
    # Every /v1 operation's 401 comes from the same check, and so does its 429 (the
    # request rate); one of each is produced above.
    same_check = {answer for answer in documented if answer[1] in (401, 429)}
    assert answered | unproduced | same_check == documented


def test_a_replayed_import_conforms_to_the_document(app, client, auth, seeded):
    document = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = document["/v1/import/{slug}"]["POST"]
    headers = {**auth, "Idempotency-Key": "once"}
    first = client.post("/v1/import/vendors", json=GOOD, headers=headers)
    again = client.post("/v1/import/vendors", json=GOOD, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    reused = client.post("/v1/import/vendors", json=BAD, headers=headers)
    assert reused.status_code == 422
    assert reused.json["detail"]["code"] == "idempotency_key_reused"
    for response in (first, again, reused):
        case = operation.Case(path_parameters={"slug": "vendors"})
        case.validate_response(response, checks=CHECKS)
