"""Completion webhooks for real: gunicorn and a Celery worker on PostgreSQL and Redis
deliver to a receiver in this process; and the row lock that keeps two messages for
one delivery from attempting it at once."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from importer import webhooks
from importer.models import WebhookDelivery
from tests.factories import LOOPBACK, VENDOR_MAPPING, accept_records, vendor
from tests.integration.factories import vendor_report, wait_until, waiting_on_a_lock
from tests.webhook_receiver import Receiver
from worker.tasks import run_delivery

SECRET = "integration-secret-0123"


def test_an_import_is_delivered_signed_and_a_failed_attempt_is_retried(api):
    slug = api.create_report("vendor", VENDOR_MAPPING)
    # The first attempt is answered 500: the retry comes from the relay once it is due.
    with Receiver(statuses=[500]) as receiver:
        created = api.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["Import.Completed"], "secret": SECRET},
        )
        assert created.status_code == 201, created.text
        webhook_id = created.json()["id"]
        response = api.post(f"/v1/import/{slug}", json={"data": [vendor(1), vendor(2)]})
        assert response.status_code == 200, response.text[:500]
        batch_id = response.json()["batch_id"]

        first, second = receiver.wait_for(2, timeout=90)

    for request in (first, second):
        assert request.signed_with(SECRET)
        assert request.headers["X-Importer-Event"] == "Import.Completed"
    assert first.body == second.body
    assert first.headers["X-Importer-Delivery"] == second.headers["X-Importer-Delivery"]
    event = first.json()
    assert event["event_type"] == "Import.Completed"
    assert event["event_id"].startswith("cbevt_")
    assert (event["data"]["batch_id"], event["data"]["status"]) == (batch_id, "completed")
    assert event["data"]["created_count"] == 2

    def delivered() -> bool:
        items = api.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
        return bool(items) and items[0]["status"] == "delivered"

    wait_until(delivered, timeout=30, what="the delivery to be recorded as delivered", every=0.1)
    (shown,) = api.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["items"]
    assert shown["id"] == first.headers["X-Importer-Delivery"]
    assert shown["event_id"] == event["event_id"]
    assert shown["attempt_count"] == 2
    assert [attempt["status_code"] for attempt in shown["attempts"]] == [500, 200]


def test_two_messages_for_one_delivery_never_attempt_it_at_once(pg):
    gate = threading.Event()
    with Receiver(gate=gate) as receiver:
        org, report = vendor_report(pg, "webhook-locks")
        with pg.session() as session:
            webhooks.create_endpoint(
                session, org.id, url=receiver.url, events=webhooks.EVENT_TYPES, secret=SECRET
            )
        # Every record invalid: the batch ends, and its delivery is recorded, at once.
        batch_id, _ = accept_records(pg, org, report, [{"Supplier Name": "no id"}], chunk_size=10)
        with pg.session() as session:
            delivery_id = session.scalars(
                sa.select(WebhookDelivery.id).where(WebhookDelivery.batch_id == batch_id)
            ).one()

        outcomes: list[str] = []

        def deliver() -> None:
            outcome = run_delivery(pg, delivery_id, max_attempts=8, allowed_networks=LOOPBACK)
            outcomes.append(outcome.result)

        first = threading.Thread(target=deliver)
        first.start()
        receiver.wait_for(1)  # the first attempt is in flight, holding the row
        second = threading.Thread(target=deliver)
        second.start()
        wait_until(
            lambda: waiting_on_a_lock(pg) or not second.is_alive(),
            what="the second message to wait for the row lock",
        )
        assert second.is_alive()
        gate.set()
        first.join(30)
        second.join(30)

    assert outcomes == ["delivered", "skipped"]
    assert len(receiver.requests) == 1
    with pg.session() as session:
        done = session.get(WebhookDelivery, delivery_id)
        assert (done.status, done.attempt_count) == ("delivered", 1)
