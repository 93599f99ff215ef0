"""``/v1/webhooks``: register, list, read, disable, deliveries; and end to end through the
app with the inline worker, to a real receiver on loopback."""

from __future__ import annotations

import ipaddress

import pytest

from importer import webhook_targets
from tests.factories import vendor
from tests.webhook_receiver import Receiver

SECRET = "a-secret-of-at-least-16"
BOTH = ["Import.Completed", "Import.Failed"]


def create(client, auth, **overrides):
    body = {"url": "https://example.com/hooks", "events": BOTH, "secret": SECRET, **overrides}
    return client.post("/v1/webhooks", json=body, headers=auth)


def test_create_read_list_and_the_secret_is_never_shown(client, auth, loopback_webhooks):
    response = create(client, auth, events=["Import.Failed", "Import.Completed", "Import.Failed"])
    assert response.status_code == 201
    webhook = response.json
    assert set(webhook) == {"id", "url", "events", "created_at"}
    assert webhook["id"].startswith("cbwhk_") and len(webhook["id"]) == len("cbwhk_") + 32
    assert (webhook["url"], webhook["events"]) == ("https://example.com/hooks", BOTH)
    assert response.headers["Location"] == f"/v1/webhooks/{webhook['id']}"
    assert client.get(f"/v1/webhooks/{webhook['id']}", headers=auth).json == webhook
    second = create(client, auth, url="http://127.0.0.1:9/h", events=["Import.Completed"]).json
    listed = client.get("/v1/webhooks", headers=auth).json
    assert (listed["total"], listed["items"]) == (2, [webhook, second])
    page = client.get("/v1/webhooks?limit=1&offset=1", headers=auth).json
    assert (page["items"], page["total"], page["limit"], page["offset"]) == ([second], 2, 1, 1)
    for body in (response.get_data(as_text=True), str(listed)):
        assert SECRET not in body


def test_delete_disables_it(client, auth):
    webhook = create(client, auth).json
    url = f"/v1/webhooks/{webhook['id']}"
    assert client.delete(url, headers=auth).status_code == 204
    for method in ("GET", "DELETE"):
        gone = client.open(url, method=method, headers=auth)
        assert gone.status_code == 404 and gone.json["detail"]["code"] == "webhook_not_found"
    assert client.get(f"{url}/deliveries", headers=auth).status_code == 404
    assert client.get("/v1/webhooks", headers=auth).json["total"] == 0


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"url": "ftp://example.com/hooks"}, "url"),
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "example.com/hooks"}, "url"),
        ({"url": "http://"}, "url"),
        ({"url": "https://example.com/" + "x" * 2048}, "url"),
        ({"url": 42}, "url"),
        ({"events": []}, "events"),
        ({"events": ["Import.Started"]}, "events.0"),
        ({"events": "Import.Completed"}, "events"),
        ({"secret": "short"}, "secret"),
        ({"secret": None}, "secret"),
        ({"color": "blue"}, "color"),
    ],
)
def test_invalid_registrations_are_422(client, auth, overrides, field):
    response = create(client, auth, **overrides)
    assert response.status_code == 422, response.json
    assert response.json["detail"]["code"] == "invalid_body"
    assert field in {problem["field"] for problem in response.json["detail"]["errors"]}
    assert client.get("/v1/webhooks", headers=auth).json["total"] == 0


def test_a_missing_field_and_a_body_that_is_not_json_are_422(client, auth):
    for body in ({"url": "https://example.com/h", "events": BOTH}, {}):
        response = client.post("/v1/webhooks", json=body, headers=auth)
        assert response.status_code == 422 and response.json["detail"]["code"] == "invalid_body"
    garbled = client.post("/v1/webhooks", data="{", content_type="application/json", headers=auth)
    assert garbled.status_code == 422


def test_another_orgs_webhook_is_404(client, auth, make_org):
    webhook = create(client, auth).json
    _, other_key = make_org("Other")
    other = {"Authorization": f"Bearer {other_key}"}
    for method, path in (
        ("GET", ""),
        ("DELETE", ""),
        ("GET", "/deliveries"),
    ):
        response = client.open(f"/v1/webhooks/{webhook['id']}{path}", method=method, headers=other)
        assert response.status_code == 404, (method, path)
        assert response.json["detail"]["code"] == "webhook_not_found"
    assert client.get("/v1/webhooks", headers=other).json["total"] == 0
    assert client.get(f"/v1/webhooks/{webhook['id']}", headers=auth).status_code == 200


def test_an_import_is_delivered_to_the_receiver_and_shown_in_the_deliveries(
    client, auth, make_report, worker, loopback_webhooks
):
    make_report()
    worker.deliver_webhooks = True
    with Receiver(statuses=[500]) as receiver:
        webhook = create(client, auth, url=receiver.url).json
        failed_only = create(client, auth, url=receiver.url, events=["Import.Failed"]).json
        imported = client.post("/v1/import/vendors", json={"data": [vendor(1)]}, headers=auth)
        assert imported.status_code == 200
        # Every record invalid: the batch ends when accepted; the web hands it over.
        rejected = client.post(
            "/v1/import/vendors", json={"data": [{"Supplier Name": "no id"}]}, headers=auth
        )
        assert rejected.status_code == 400
        first, second = receiver.wait_for(2)
    assert [r.json()["data"]["batch_id"] for r in (first, second)] == [
        imported.json["batch_id"],
        rejected.json["batch_id"],
    ]
    assert all(r.signed_with(SECRET) for r in (first, second))
    assert first.json()["data"]["status"] == "completed"

    listed = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=auth).json
    assert listed["total"] == 2
    newest, oldest = listed["items"]  # newest first
    assert oldest["id"] == first.headers["X-Importer-Delivery"]
    assert newest["id"] == second.headers["X-Importer-Delivery"]
    assert oldest["event_id"] == first.json()["event_id"]
    assert (oldest["event_type"], oldest["status"], oldest["attempt_count"]) == (
        "Import.Completed",
        "pending",
        1,
    )
    assert oldest["next_attempt_at"] >= oldest["created_at"] and oldest["delivered_at"] is None
    (attempt,) = oldest["attempts"]
    assert set(attempt) == {"at", "status_code", "error", "duration_ms"}
    assert (attempt["status_code"], attempt["error"]) == (500, None)
    assert (newest["status"], newest["attempt_count"]) == ("delivered", 1)
    assert newest["delivered_at"] is not None and newest["next_attempt_at"] is None
    assert newest["attempts"][0]["status_code"] == 200
    assert client.get(f"/v1/webhooks/{failed_only['id']}/deliveries", headers=auth).json == {
        "items": [],
        "total": 0,
        "total_is_lower_bound": False,
        "limit": 50,
        "offset": 0,
        "next_cursor": None,
    }


def test_a_dry_run_import_delivers_nothing(client, auth, make_report, worker):
    make_report()
    webhook = create(client, auth).json
    response = client.post(
        "/v1/import/vendors?dry_run=true", json={"data": [vendor(1)]}, headers=auth
    )
    assert response.status_code == 200
    assert worker.webhooks_sent == []
    deliveries = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=auth).json
    assert deliveries["total"] == 0


def test_a_broker_outage_at_hand_over_leaves_the_delivery_to_the_relay(
    app, client, auth, make_report, worker
):
    make_report()
    webhook = create(client, auth).json

    worker.down = True
    response = client.post(
        "/v1/import/vendors", json={"data": [{"Supplier Name": "no id"}]}, headers=auth
    )
    assert response.status_code == 400  # the import is answered all the same
    (pending,) = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=auth).json["items"]
    assert (pending["status"], pending["attempt_count"]) == ("pending", 0)


# --- targets the service must not reach -------------------------------------------------


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
        ("http://[::1]:8080/hooks", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://10.1.2.3/hooks", "10.1.2.3 is a private address"),
        ("https://172.16.0.1/hooks", "172.16.0.1 is a private address"),
        ("http://192.168.1.1:8443/", "192.168.1.1 is a private address"),
        ("http://100.64.0.1/hooks", "100.64.0.1 is a carrier-grade NAT address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
        ("http://[::ffff:127.0.0.1]/", " is a loopback address"),  # 127.0.0.1, mapped
        ("http://localhost:8000/hooks", "localhost resolves to "),
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, a loopback address"),
    ],
)
def test_a_target_that_is_not_public_is_refused_at_registration(client, auth, url, reason):
    response = create(client, auth, url=url)

    assert response.status_code == 422, response.json
    detail = response.json["detail"]
    assert detail["code"] == "invalid_webhook_url"
    assert detail["message"].startswith("The webhook URL is refused: ")
    assert reason in detail["message"]
    assert "IMPORTER_WEBHOOK_ALLOW_NETWORKS" in detail["message"]
    assert [problem["field"] for problem in detail["errors"]] == ["url"]
    assert client.get("/v1/webhooks", headers=auth).json["total"] == 0


def resolve_as(monkeypatch, **names):
    """Name resolution answers ``names`` (dots written as ``_``) from now on."""
    answers = {name.replace("_", "."): addresses for name, addresses in names.items()}

    def resolve(host, port):
        return [ipaddress.ip_address(address) for address in answers[host]]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)


def test_a_name_that_resolves_only_to_refused_addresses_is_refused(client, auth, monkeypatch):
    resolve_as(
        monkeypatch,
        intranet_example=["10.0.0.7", "127.0.0.1"],
        mixed_example=["10.0.0.7", "93.184.215.14"],
    )

    refused = create(client, auth, url="https://intranet.example/hooks")
    assert refused.status_code == 422
    assert refused.json["detail"]["code"] == "invalid_webhook_url"
    message = refused.json["detail"]["message"]
    assert "intranet.example resolves to 10.0.0.7, a private address" in message
    # One public address is enough: each delivery connects to a public one.
    assert create(client, auth, url="https://mixed.example/hooks").status_code == 201


def test_a_network_the_operator_allows_can_be_registered(app, client, auth):
    services = app.extensions["importer"]
    services.settings = services.settings.replace(
        webhook_allow_networks=(ipaddress.ip_network("10.20.0.0/16"),)
    )

    assert create(client, auth, url="http://10.20.30.40:8080/hooks").status_code == 201
    refused = create(client, auth, url="http://10.21.0.1/hooks")
    assert refused.status_code == 422
    assert "10.21.0.1 is a private address" in refused.json["detail"]["message"]


def test_a_name_that_resolves_to_loopback_at_delivery_is_never_posted_to(
    client, auth, make_report, worker, monkeypatch
):
    """DNS rebinding: public when registered, the service's own loopback when the
    delivery is attempted. The receiver listening there gets nothing."""
    make_report()
    worker.deliver_webhooks = True
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        resolve_as(monkeypatch, hooks_partner_example=["93.184.215.14"])
        webhook = create(client, auth, url=f"http://hooks.partner.example:{port}/hooks").json

        resolve_as(monkeypatch, hooks_partner_example=["127.0.0.1"])
        imported = client.post("/v1/import/vendors", json={"data": [vendor(1)]}, headers=auth)
        assert imported.status_code == 200
        assert worker.webhooks_sent  # the delivery was attempted

    assert receiver.requests == []
    (shown,) = client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=auth).json["items"]
    assert (shown["status"], shown["attempt_count"]) == ("pending", 1)
    (attempt,) = shown["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"] == (
        "Refused: hooks.partner.example resolves to 127.0.0.1, a loopback address; not sent."
    )
