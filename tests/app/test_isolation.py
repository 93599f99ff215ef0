"""Isolation: walk every /v1 endpoint with a second org's key and find nothing of the first."""

from __future__ import annotations

import re

import pytest

from tests.factories import vendor


@pytest.fixture
def first_org(client, auth, make_report):
    """Everything the first org can have: reports, batches, objects of each kind."""
    for base_object in ("vendor", "service", "assessment"):
        make_report(base_object)
    imported = {}
    imported["vendor"] = client.post(
        "/v1/import/vendors", json={"data": [vendor(1)]}, headers={**auth, "Idempotency-Key": "k"}
    ).json
    imported["service"] = client.post(
        "/v1/import/services",
        json={"data": [{"Service ID": "S-1", "Service Name": "s", "Supplier ID": "V-00001"}]},
        headers=auth,
    ).json
    imported["assessment"] = client.post(
        "/v1/import/assessments",
        json={"data": [{"Assessment ID": "A-1", "Supplier ID": "V-00001"}]},
        headers=auth,
    ).json
    assert all(body["created_count"] == 1 for body in imported.values())
    webhook = client.post(
        "/v1/webhooks",
        json={"url": "https://example.com/h", "events": ["Import.Completed"], "secret": "s" * 16},
        headers=auth,
    ).json
    return {
        "slug": "vendors",
        "webhook_id": webhook["id"],
        "batch_id": imported["vendor"]["batch_id"],
        "vendor": imported["vendor"]["results"][0]["coverbase_id"],
        "service": imported["service"]["results"][0]["coverbase_id"],
        "assessment": imported["assessment"]["results"][0]["coverbase_id"],
    }


def concrete(rule: str, ids: dict[str, str]) -> str:
    """The rule's URL filled in with the first org's ids."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[-1]
        if name == "object_id":
            kind = {"vendors": "vendor", "services": "service", "assessments": "assessment"}[
                rule.split("/")[2]
            ]
            return ids[kind]
        return ids[name]

    return re.sub(r"<([^>]+)>", fill, rule)


def test_a_second_org_sees_and_changes_nothing_of_the_first(app, client, auth, first_org, make_org):
    _, other_key = make_org("Intruder")
    other = {"Authorization": f"Bearer {other_key}"}
    before = {
        "reports": client.get("/v1/import-reports", headers=auth).json,
        "batches": client.get("/v1/import/batches", headers=auth).json,
        "vendors": client.get("/v1/vendors", headers=auth).json,
        "webhooks": client.get("/v1/webhooks", headers=auth).json,
    }
    walked = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        url = concrete(rule.rule, first_org)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            walked.add((method, rule.rule))
            if (method, rule.rule) in {("POST", "/v1/import-reports"), ("POST", "/v1/webhooks")}:
                continue  # creates in one's own org: checked last, below
            body = {"data": [vendor(1, **{"Supplier Name": "hijacked"})], "report_name": "x"}
            response = client.open(url, method=method, json=body, headers=other)
            label = f"{method} {url}"
            if rule.arguments:
                assert response.status_code == 404, label  # never 403: nothing is there
            else:
                assert method == "GET" and response.status_code == 200, label
                assert response.json["items"] == [] and response.json["total"] == 0, label
            text = response.get_data(as_text=True)
            # Nothing of the first org's comes back, beyond the id the request itself named.
            leaked = [
                value
                for name, value in first_org.items()
                if name != "slug" and value in text and value not in url
            ]
            assert leaked == [] and "Vendor 1" not in text, label
    # The walk covered every endpoint the app has (a new one must be added here).
    assert {rule for _, rule in walked} == {
        r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/v1/")
    }
    assert ("POST", "/v1/import/<import_slug:slug>") in walked
    # A report of one's own may take the first org's slug: slugs are per org.
    mine = client.post(
        "/v1/import-reports",
        json={
            "slug": "vendors",
            "report_name": "mine",
            "base_object": "vendor",
            "mapping": {"external_id": "ID", "name": "N"},
        },
        headers=other,
    )
    assert mine.status_code == 201
    my_webhook = client.post(
        "/v1/webhooks",
        json={"url": "https://example.com/h", "events": ["Import.Failed"], "secret": "t" * 16},
        headers=other,
    )
    assert my_webhook.status_code == 201
    assert client.get("/v1/webhooks", headers=other).json["items"] == [my_webhook.json]
    after = {
        "reports": client.get("/v1/import-reports", headers=auth).json,
        "batches": client.get("/v1/import/batches", headers=auth).json,
        "vendors": client.get("/v1/vendors", headers=auth).json,
        "webhooks": client.get("/v1/webhooks", headers=auth).json,
    }
    assert after == before
    # Filters cannot reach across orgs either.
    assert client.get("/v1/vendors?external_id=V-00001", headers=other).json["items"] == []
    replay = client.post(
        "/v1/import/vendors", json={"data": [vendor(1)]}, headers={**other, "Idempotency-Key": "k"}
    )
    assert "Idempotent-Replayed" not in replay.headers
