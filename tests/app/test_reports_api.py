"""Import report configuration: CRUD, mapping checks, versioning."""

from __future__ import annotations

import pytest

from tests.factories import VENDOR_MAPPING


def create(client, auth, **overrides):
    body = {
        "slug": "supplier-feed",
        "report_name": "Supplier feed",
        "base_object": "vendor",
        "mapping": {"external_id": "ID", "name": "Name", "website": "URL"},
        **overrides,
    }
    return client.post("/v1/import-reports", json=body, headers=auth)


def test_create_read_list(client, auth):
    response = create(client, auth, required=["website"])
    assert response.status_code == 201
    report = response.json
    assert report["id"].startswith("cbimprt_") and len(report["id"]) == len("cbimprt_") + 32
    assert report["version"] == 1
    # The base object's own required fields are always required.
    assert report["required"] == ["external_id", "name", "website"]
    assert response.headers["Location"] == "/v1/import-reports/supplier-feed"
    assert client.get("/v1/import-reports/supplier-feed", headers=auth).json == report
    listed = client.get("/v1/import-reports", headers=auth).json
    assert (listed["total"], listed["items"]) == (1, [report])


def test_patch_bumps_the_version_only_when_mapping_or_required_change(client, auth):
    create(client, auth)
    renamed = client.patch(
        "/v1/import-reports/supplier-feed", json={"report_name": "Renamed"}, headers=auth
    ).json
    assert (renamed["report_name"], renamed["version"]) == ("Renamed", 1)
    remapped = client.patch(
        "/v1/import-reports/supplier-feed",
        json={"mapping": {"external_id": "ID", "name": "Supplier"}},
        headers=auth,
    ).json
    assert remapped["version"] == 2
    assert remapped["mapping"] == {"external_id": "ID", "name": "Supplier"}
    required = client.patch(
        "/v1/import-reports/supplier-feed",
        json={
            "mapping": {"external_id": "ID", "name": "Supplier", "status": "S"},
            "required": ["status"],
        },
        headers=auth,
    ).json
    assert (required["version"], required["required"]) == (3, ["external_id", "name", "status"])


def test_delete_archives_and_frees_the_slug(client, auth):
    create(client, auth)
    assert client.delete("/v1/import-reports/supplier-feed", headers=auth).status_code == 204
    gone = client.get("/v1/import-reports/supplier-feed", headers=auth)
    assert (gone.status_code, gone.json["detail"]["code"]) == (404, "report_not_found")
    assert client.get("/v1/import-reports", headers=auth).json["total"] == 0
    assert create(client, auth).status_code == 201


def test_duplicate_slug_is_409(client, auth):
    create(client, auth)
    response = create(client, auth)
    assert response.status_code == 409
    assert response.json["detail"]["code"] == "slug_taken"


@pytest.mark.parametrize(
    "overrides, field, message_part",
    [
        (
            {"mapping": {"external_id": "ID", "name": "N", "colour": "C"}},
            "mapping.colour",
            "not a field of vendor",
        ),
        ({"mapping": {"external_id": "ID", "name": "ID"}}, "mapping.name", "used for both"),
        ({"mapping": {"external_id": "ID"}}, "mapping.name", "has no mapping"),
        ({"required": ["status"]}, "mapping.status", "has no mapping"),
        ({"required": ["colour"]}, "required", "not a field"),
        ({"base_object": "contract"}, "base_object", "must be one of vendor, service, assessment"),
        ({"slug": "Not A Slug"}, "slug", "a-z, 0-9"),
        ({"slug": "batches"}, "slug", "reserved"),
        (
            {"mapping": {"external_id": " ID", "name": "N"}},
            "mapping.external_id",
            "leading or trailing",
        ),
    ],
)
def test_mapping_problems_are_422_naming_the_problem(client, auth, overrides, field, message_part):
    response = create(client, auth, **overrides)
    assert response.status_code == 422
    detail = response.json["detail"]
    assert detail["code"] == "invalid_mapping"
    assert message_part in detail["message"]
    assert field in [problem["field"] for problem in detail["errors"]]


def test_a_service_report_must_map_the_vendor_reference(client, auth):
    response = create(
        client, auth, base_object="service", mapping={"external_id": "ID", "name": "Name"}
    )
    assert response.status_code == 422
    assert "'vendor_external_id' is required for service" in response.json["detail"]["message"]


@pytest.mark.parametrize(
    "body, message_part",
    [
        ({"slug": "x"}, "report_name"),
        ({"slug": "x", "report_name": "X", "base_object": "vendor", "mapping": "ID"}, "mapping"),
        (
            {"slug": "x", "report_name": "X", "base_object": "vendor", "mapping": {"name": 1}},
            "mapping",
        ),
        (
            {"slug": "x", "report_name": "X", "base_object": "vendor", "mapping": {}, "id": "y"},
            "id",
        ),
    ],
)
def test_malformed_bodies_are_422_invalid_body(client, auth, body, message_part):
    response = client.post("/v1/import-reports", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json["detail"]["code"] == "invalid_body"
    assert message_part in response.json["detail"]["message"]


def test_patch_cannot_break_the_mapping(client, auth, make_report):
    make_report()
    response = client.patch(
        "/v1/import-reports/vendors", json={"mapping": {"name": "Supplier Name"}}, headers=auth
    )
    assert response.status_code == 422
    again = client.get("/v1/import-reports/vendors", headers=auth).json
    assert again["mapping"] == VENDOR_MAPPING and again["version"] == 1


def test_reports_of_another_org_are_invisible(client, auth, make_org, make_report):
    other_org, other_key = make_org("Other")
    make_report(org=other_org, slug="theirs")
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)("/v1/import-reports/theirs", json={}, headers=auth)
        assert response.status_code == 404, method
    assert client.get("/v1/import-reports", headers=auth).json["total"] == 0


def test_list_pagination_bounds(client, auth):
    for n in range(3):
        create(client, auth, slug=f"feed-{n}")
    page = client.get("/v1/import-reports?limit=2&offset=1", headers=auth).json
    assert ([r["slug"] for r in page["items"]], page["total"], page["limit"], page["offset"]) == (
        ["feed-1", "feed-2"],
        3,
        2,
        1,
    )
    for bad in ("limit=0", "limit=201", "limit=x", "offset=-1"):
        response = client.get(f"/v1/import-reports?{bad}", headers=auth)
        assert response.status_code == 422, bad
        assert response.json["detail"]["code"] == "invalid_parameter"
