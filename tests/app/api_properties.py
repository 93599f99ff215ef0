"""The API's properties, checked against whatever app the collecting module's fixtures
give (``world``, ``app``, ``client``, ...): the hypothesis tests of generated mappings,
records, URLs and bodies (collected by tests/app/test_properties.py) and the schemathesis
run against the OpenAPI document (collected by tests/app/test_openapi.py). Both are
collected again, on PostgreSQL, by tests/integration/test_properties_postgres.py: the
test functions live here so that no test module imports another. (The reports, batches,
objects and webhooks the schemathesis run finds come from the ``seeded`` fixture of
tests/conftest.py.)
"""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.parsing import NDJSON_TYPES
from importer import reports
from importer.catalog import VENDOR
from tests.factories import FLASK_ARGUMENT

OPTIONAL_FIELDS = [name for name in VENDOR.field_names if name not in ("external_id", "name")]

incoming_names = (
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", " ", "2026-01-31", "85", "yes", "acme.com", "a@b.co", "a, b", "active"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


@st.composite
def mappings(draw):
    fields = [
        "external_id",
        "name",
        *draw(st.lists(st.sampled_from(OPTIONAL_FIELDS), unique=True, max_size=6)),
    ]
    names = draw(st.lists(incoming_names, min_size=len(fields), max_size=len(fields), unique=True))
    return dict(zip(fields, names, strict=True))


@st.composite
def batches(draw, mapping):
    keys = list(mapping.values())
    ids = draw(
        st.lists(
            st.sampled_from([f"ext-{n}" for n in range(8)]) | json_values, min_size=1, max_size=12
        )
    )
    records = []
    for external_id in ids:
        record = {mapping["external_id"]: external_id}
        for key in draw(st.lists(st.sampled_from(keys[1:]), unique=True)):
            record[key] = draw(json_values | st.just("Vendor"))
        if draw(st.booleans()):
            record[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
        records.append(record)
    return records


slugs = (f"p-{n}" for n in itertools.count())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_batch_is_accounted_for_record_by_record(world, data):
    client, auth = world
    mapping = data.draw(mappings())
    slug = next(slugs)
    created = client.post(
        "/v1/import-reports",
        json={"slug": slug, "report_name": slug, "base_object": "vendor", "mapping": mapping},
        headers=auth,
    )
    assert created.status_code in (201, 422), created.json
    if created.status_code == 422:
        return  # e.g. an incoming name with leading spaces: refused with a reason
    records = data.draw(batches(mapping))
    response = client.post(f"/v1/import/{slug}", json={"data": records}, headers=auth)
    assert response.status_code in (200, 400), response.json
    event(f"answered {response.status_code}")
    body = response.json
    assert body["status"] == "completed"
    assert body["received_count"] == len(records)
    assert (
        body["received_count"]
        == body["created_count"] + body["updated_count"] + body["failed_count"]
    )
    assert (response.status_code == 200) == (body["created_count"] + body["updated_count"] > 0)
    written = {result["index"] for result in body["results"]}
    with_errors = {error["index"] for error in body["errors"]}
    assert written.isdisjoint(with_errors)
    assert written | with_errors == set(range(len(records)))
    assert len(with_errors) == body["failed_count"]
    for error in body["errors"]:
        assert error["error_code"] in {
            "missing_required_field",
            "invalid_field_value",
            "duplicate_external_id",
        }
        assert error["message"]


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=200) | json_values.map(lambda value: str(value).encode()))
def test_any_body_gets_an_answer_in_the_documented_shape(world, raw):
    client, auth = world
    client.post(
        "/v1/import-reports",
        json={
            "slug": "raw",
            "report_name": "raw",
            "base_object": "vendor",
            "mapping": {"external_id": "id", "name": "name"},
        },
        headers=auth,
    )
    response = client.post(
        "/v1/import/raw", data=raw, headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code in (200, 400, 413, 422)
    if response.status_code in (413, 422):
        assert set(response.json["detail"]) >= {"code", "message"}


# --- every path and query parameter, every body: never a 5xx -------------------------

#: Any text (control characters and lone surrogates included), text around a character
#: no database column takes, or something that reads like a real slug or id.
short_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=8)
unstorable = st.tuples(short_text, st.sampled_from(["\x00", "\x00", "\ud800"]), short_text)
any_text = st.one_of(
    short_text,
    unstorable.map("".join),
    unstorable.map("".join),
    st.sampled_from(["vendors", "cbbatch_0", "cbwhk_0", "cbvndr_0", "batches", "%00"]),
)


def _url_part(text: str) -> str:
    # A surrogate cannot be sent as UTF-8: its bytes go as they would be encoded.
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _operations(app) -> list[tuple[str, str, frozenset[str]]]:
    return sorted(
        (method, rule.rule, frozenset(rule.arguments))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    )


QUERY_NAMES = ["limit", "offset", "status", "slug", "external_id", "updated_since", "wait"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_path_or_query_text_gets_an_answer_in_the_documented_shape(world, data):
    client, auth = world
    method, rule, arguments = data.draw(st.sampled_from(_operations(client.application)))
    path = FLASK_ARGUMENT.sub(lambda m: _url_part(data.draw(any_text)), rule)
    query = data.draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | any_text, any_text)))
    url = path + "?" + "&".join(f"{_url_part(k)}={_url_part(v)}" for k, v in query)
    response = client.open(url, method=method, headers=auth, json={})
    event(f"answered {response.status_code}")
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400 and response.status_code != 405:
        assert set(response.json["detail"]) >= {"code", "message"}


def _changed(valid: dict, **changes: st.SearchStrategy) -> st.SearchStrategy:
    """A valid body (its values drawn from ``valid``: strategies or constants) with some of
    its values replaced by what ``changes`` draw, or none."""
    one_change = st.sampled_from(sorted(changes)).flatmap(
        lambda key: changes[key].map(lambda value: {key: value})
    )
    return st.tuples(
        st.fixed_dictionaries(
            {key: v if isinstance(v, st.SearchStrategy) else st.just(v) for key, v in valid.items()}
        ),
        one_change | st.fixed_dictionaries({}, optional=changes),
    ).map(lambda drawn: {**drawn[0], **drawn[1]})


report_bodies = _changed(
    {
        "slug": st.uuids().map(lambda uuid: f"generated-{uuid.hex[:12]}"),  # never taken
        "report_name": "Generated",
        "base_object": "vendor",
        "mapping": {"external_id": "id", "name": "name"},
    },
    slug=any_text,
    report_name=any_text | json_values,
    base_object=st.sampled_from(["vendor", "service"]) | any_text,
    mapping=st.dictionaries(
        st.sampled_from(VENDOR.field_names) | any_text, any_text | json_values, max_size=4
    )
    | json_values,
    required=st.lists(st.sampled_from(VENDOR.field_names) | any_text, max_size=3),
)
webhook_bodies = _changed(
    {"url": "https://example.com/h", "events": ["Import.Completed"], "secret": "0123456789abcdef"},
    url=any_text.map(lambda text: f"https://example.com/{text}") | any_text,
    events=st.lists(st.sampled_from(["Import.Completed", "Import.Failed"]) | any_text),
    secret=any_text.map(lambda text: f"0123456789abcdef{text}") | json_values,
)
BODY_OPERATIONS = [
    ("POST", "/v1/import-reports", report_bodies),
    ("PATCH", "/v1/import-reports/vendors", report_bodies),
    ("POST", "/v1/webhooks", webhook_bodies),
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_report_or_webhook_body_gets_an_answer_in_the_documented_shape(world, data):
    client, auth = world
    method, url, bodies = data.draw(st.sampled_from(BODY_OPERATIONS))
    body = data.draw(st.one_of(bodies, bodies, bodies, json_values))
    client.post(
        "/v1/import-reports",
        json={
            "slug": "vendors",
            "report_name": "vendors",
            "base_object": "vendor",
            "mapping": {"external_id": "id", "name": "name"},
        },
        headers=auth,
    )
    # ensure_ascii: a lone surrogate goes as its \u escape, as a client's JSON would.
    raw = json.dumps(body, ensure_ascii=True).encode()
    response = client.open(
        url, method=method, data=raw, headers={**auth, "Content-Type": "application/json"}
    )
    event(f"answered {response.status_code}")
    assert response.status_code in (200, 201, 409, 422), response.get_data(as_text=True)
    if response.status_code >= 400:
        assert set(response.json["detail"]) >= {"code", "message"}


# --- the API agrees with the document ------------------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def restore_reports(db, org, definitions: dict[str, dict[str, Any]]) -> None:
    """Put the seeded reports back as they were (a generated PATCH may have renamed or
    changed one, a DELETE archived it), so later cases still find them."""
    with db.session() as session:
        for slug, definition in definitions.items():
            report = reports.active_report(session, org.id, slug)
            if report is not None and all(
                getattr(report, name) == value for name, value in definition.items()
            ):
                continue
            if report is not None:
                reports.archive_report(session, report)
            reports.create_report(session, session.merge(org), **definition)


@pytest.fixture
def api_schema(app, seeded, db, org_and_key):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    known = seeded["known"]

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        """About half of the cases get existing slugs and ids instead of generated ones."""
        if not path_parameters:
            return st.just(path_parameters)
        existing = {
            name: st.sampled_from(known.get(context.operation.path) or known[name])
            for name in path_parameters
            if known.get(context.operation.path) or known.get(name)
        }
        if not existing:
            return st.just(path_parameters)
        generated = {name: st.just(value) for name, value in path_parameters.items()}
        return st.just(path_parameters) | st.fixed_dictionaries({**generated, **existing})

    return schema


@schemathesis.serializer(*NDJSON_TYPES)
def ndjson_body(context, value) -> bytes:
    """The document describes an NDJSON body as text (one record per line): send the
    text as it is (anything else a negative case generated, as JSON)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer beyond 64 bits, which orjson cannot write
        return json.dumps(value).encode()


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """schemathesis 4.32's fixture-loaded tests read and rename ``node._nodeid``, which
    pytest 9.2 no longer has (it keeps ``node._id``); give it one to work on."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_document(case, auth, db, org_and_key, seeded):
    try:
        case.call_and_validate(headers=auth, checks=CHECKS)
    finally:
        restore_reports(db, org_and_key[0], seeded["definitions"])
