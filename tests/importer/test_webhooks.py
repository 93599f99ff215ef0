"""Completion webhooks, as plain functions against a real HTTP receiver on loopback:
deliveries recorded with the batch's end, signed, attempted, retried, given up, relayed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re

import orjson
import pytest
import sqlalchemy as sa
import urllib3.util.connection

from importer import webhook_targets, webhooks
from importer.models import BatchStatus, DeliveryStatus, ImportBatch, WebhookDelivery
from importer.notify import PollingNotifier
from importer.outcomes import batch_summary
from tests.factories import LOOPBACK, accept_records, recording_outbox
from tests.webhook_receiver import Receiver, closed_port_url
from worker.tasks import give_up_chunk, run_chunk, run_delivery

SECRET = "a-secret-of-at-least-16"
BOTH = [webhooks.IMPORT_COMPLETED, webhooks.IMPORT_FAILED]


def register(db, org, url, events=BOTH, secret=SECRET):
    with db.session() as session:
        return webhooks.create_endpoint(session, org.id, url=url, events=events, secret=secret)


def deliver(db, delivery_id, max_attempts=8, allowed_networks=LOOPBACK):
    """One attempt, as a worker makes it with ``IMPORTER_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/8``
    (the receivers listen on loopback)."""
    return run_delivery(
        db, delivery_id, max_attempts=max_attempts, allowed_networks=allowed_networks
    )


def disable(db, endpoint):
    with db.session() as session:
        webhooks.disable_endpoint(session, session.merge(endpoint))


def accept(db, org, report, records, chunk_size=10, dry_run=False):
    return accept_records(db, org, report, records, chunk_size=chunk_size, dry_run=dry_run)


def valid(n):
    return [{"Supplier ID": f"V{i}", "Supplier Name": "n"} for i in range(n)]


def complete_a_batch(db, org, report, outbox=None, n=2):
    """Accept a batch and run its chunks; ``outbox``'s broker gets the deliveries'
    hand-over (a recording one by default)."""
    outbox = outbox or recording_outbox(db)
    batch_id, chunk_ids = accept(db, org, report, valid(n))
    for chunk_id in chunk_ids:
        run_chunk(outbox, PollingNotifier(), chunk_id)
    return batch_id


def broker_down(db):
    """An outbox whose broker cannot be reached."""
    outbox = recording_outbox(db)
    outbox.broker.down = True
    return outbox


def deliveries(db, batch_id=None):
    with db.session() as session:
        query = sa.select(WebhookDelivery).order_by(WebhookDelivery.created_at)
        if batch_id is not None:
            query = query.where(WebhookDelivery.batch_id == batch_id)
        return list(session.scalars(query))


def delivery(db, delivery_id):
    with db.session() as session:
        return session.get(WebhookDelivery, delivery_id)


def webhooks_body(made):
    return orjson.loads(made.body)


def load_batch(db, batch_id):
    with db.session() as session:
        return session.scalars(sa.select(ImportBatch).where(ImportBatch.id == batch_id)).one()


def make_due(db, delivery_id, **columns):
    """Move the next attempt (and any other timestamp given) into the past, instead of
    waiting for the backoff to pass."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with db.session() as session:
        session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=past, **{name: past for name in columns})
        )


@pytest.fixture
def org(org_and_key):
    return org_and_key[0]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


# --- what a batch's end records -------------------------------------------------------


def test_a_completed_batch_gets_one_delivery_per_matching_endpoint(
    db, org, make_org, make_report, receiver
):
    report = make_report()
    both = register(db, org, receiver.url)
    completed_only = register(db, org, receiver.url + "/2", events=[webhooks.IMPORT_COMPLETED])
    register(db, org, receiver.url + "/failed", events=[webhooks.IMPORT_FAILED])
    register(db, make_org("Other")[0], receiver.url + "/other")
    disable(db, register(db, org, receiver.url + "/disabled"))
    outbox = recording_outbox(db)

    batch_id = complete_a_batch(db, org, report, outbox)

    made = deliveries(db, batch_id)
    assert sorted(d.endpoint_id for d in made) == sorted([both.id, completed_only.id])
    # handed over after the commit
    assert sorted(outbox.broker.deliveries) == sorted(d.id for d in made)
    assert {d.event_type for d in made} == {webhooks.IMPORT_COMPLETED}
    assert len({d.event_id for d in made}) == 1  # one event, one delivery per endpoint
    assert all(d.status == DeliveryStatus.PENDING and d.dispatched_at for d in made)
    assert len(deliveries(db)) == 2
    assert receiver.requests == []  # nothing POSTed until the task runs


def test_the_event_of_a_reimport_counts_the_records_that_changed_nothing(
    db, org, make_report, receiver
):
    report = make_report()
    register(db, org, receiver.url)
    complete_a_batch(db, org, report)
    batch_id = complete_a_batch(db, org, report)  # the same records again
    (made,) = deliveries(db, batch_id)
    data = orjson.loads(made.body)["data"]
    assert (data["created_count"], data["updated_count"], data["unchanged_count"]) == (0, 2, 2)


def test_the_body_and_the_signature_verify_with_the_secret(db, org, make_report, receiver):
    endpoint = register(db, org, receiver.url)
    batch_id = complete_a_batch(db, org, make_report())
    (made,) = deliveries(db, batch_id)

    outcome = deliver(db, made.id)

    assert outcome.result == "delivered"
    (request,) = receiver.requests
    assert request.method == "POST" and request.path == "/hooks"
    assert request.signed_with(SECRET)
    assert not request.signed_with("another-secret-of-16+")
    assert request.headers["X-Importer-Signature"] == webhooks.sign(SECRET, request.body)
    assert request.headers["X-Importer-Event"] == "Import.Completed"
    assert request.headers["X-Importer-Delivery"] == made.id
    assert request.headers["X-Importer-Timestamp"].isdigit()
    assert request.headers["Content-Type"] == "application/json"
    assert request.body == made.body
    body = request.json()
    assert set(body) == {"event_id", "event_type", "occurred_at", "data"}
    assert re.fullmatch(r"cbevt_[0-9a-f]{32}", body["event_id"]) and body["event_id"] == (
        made.event_id
    )
    assert body["event_type"] == "Import.Completed"
    batch = load_batch(db, batch_id)
    assert body["occurred_at"] == int(batch.completed_at.timestamp())
    assert body["data"] == batch_summary(batch)
    assert (body["data"]["status"], body["data"]["created_count"]) == ("completed", 2)
    done = delivery(db, made.id)
    assert (done.status, done.attempt_count, done.last_status_code) == ("delivered", 1, 200)
    assert done.delivered_at is not None and done.next_attempt_at is None
    (attempt,) = done.attempts
    assert (attempt["status_code"], attempt["error"]) == (200, None)
    assert attempt["duration_ms"] >= 0 and attempt["at"] >= body["occurred_at"]
    assert endpoint.secret == SECRET


def test_a_500_then_a_200_ends_delivered_after_two_attempts(db, org, make_report):
    with Receiver(statuses=[500]) as receiver:
        register(db, org, receiver.url)
        (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

        assert deliver(db, made.id).result == "retry"
        retrying = delivery(db, made.id)
        assert (retrying.status, retrying.attempt_count) == ("pending", 1)
        assert (retrying.last_status_code, retrying.dispatched_at) == (500, None)
        assert retrying.next_attempt_at > retrying.created_at
        # A duplicate message before the backoff has passed attempts nothing.
        assert deliver(db, made.id).result == "skipped"
        assert len(receiver.requests) == 1

        make_due(db, made.id)
        assert deliver(db, made.id).result == "delivered"

    first, second = receiver.requests
    assert first.body == second.body == made.body  # the same signed bytes every time
    assert first.headers["X-Importer-Signature"] == second.headers["X-Importer-Signature"]
    assert first.headers["X-Importer-Delivery"] == second.headers["X-Importer-Delivery"]
    done = delivery(db, made.id)
    assert (done.status, done.attempt_count, done.next_attempt_at) == ("delivered", 2, None)
    assert [(a["status_code"], a["error"]) for a in done.attempts] == [(500, None), (200, None)]
    assert all(a["duration_ms"] >= 0 for a in done.attempts)


def test_a_receiver_that_is_down_is_recorded_as_an_error_and_retried(
    db, org, make_report, settings
):
    register(db, org, closed_port_url())
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

    assert deliver(db, made.id).result == "retry"
    down = delivery(db, made.id)
    (attempt,) = down.attempts
    assert attempt["status_code"] is None and "ConnectionError" in attempt["error"]
    assert down.last_error == attempt["error"] and down.last_status_code is None
    assert (down.status, down.attempt_count) == ("pending", 1)

    # Once due, the relay hands it over again (nobody else will), and it is attempted again.
    make_due(db, made.id)
    outbox = recording_outbox(db, settings)
    assert outbox.relay_webhooks() == 1
    assert outbox.broker.deliveries == [made.id]
    assert deliver(db, made.id).result == "retry"
    assert delivery(db, made.id).attempt_count == 2


def test_after_max_attempts_a_delivery_fails(db, org, make_report, settings):
    with Receiver(default_status=503) as receiver:
        register(db, org, receiver.url)
        (made,) = deliveries(db, complete_a_batch(db, org, make_report()))
        results = [deliver(db, made.id, max_attempts=3).result]
        for _ in range(2):
            make_due(db, made.id)
            results.append(deliver(db, made.id, max_attempts=3).result)
        assert results == ["retry", "retry", "failed"]
        assert delivery(db, made.id).next_attempt_at is None
        make_due(db, made.id)  # even if it looked due, a failed delivery is not attempted
        assert deliver(db, made.id, max_attempts=3).result == "skipped"
        assert len(receiver.requests) == 3
    failed = delivery(db, made.id)
    assert (failed.status, failed.attempt_count) == ("failed", 3)
    assert [a["status_code"] for a in failed.attempts] == [503, 503, 503]
    assert recording_outbox(db, settings).relay_webhooks() == 0


def test_the_backoff_is_exponential_and_capped():
    assert [webhooks.retry_delay(n) for n in range(1, 9)] == [
        10,
        30,
        90,
        270,
        810,
        2430,
        3600,
        3600,
    ]


def test_a_disabled_endpoint_is_not_called(db, org, make_report, receiver):
    endpoint = register(db, org, receiver.url)
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))
    disable(db, endpoint)

    assert deliver(db, made.id).result == "failed"
    given_up = delivery(db, made.id)
    assert (given_up.status, given_up.attempt_count, given_up.attempts) == ("failed", 0, [])
    assert "disabled" in given_up.last_error
    complete_a_batch(db, org, make_report(slug="again"))
    assert len(deliveries(db)) == 1  # no new delivery for a disabled endpoint
    assert receiver.requests == []


def test_a_redirect_is_not_followed(db, org, make_report, receiver):
    with Receiver(statuses=[302], headers={"Location": receiver.url}) as redirecting:
        register(db, org, redirecting.url)
        (made,) = deliveries(db, complete_a_batch(db, org, make_report()))
        assert deliver(db, made.id).result == "retry"
        assert len(redirecting.requests) == 1
    assert receiver.requests == []
    assert delivery(db, made.id).attempts[0]["status_code"] == 302


# --- which addresses a delivery may reach ------------------------------------------------


def test_a_loopback_receiver_is_refused_at_delivery_without_the_allow_list(
    db, org, make_report, receiver
):
    register(db, org, receiver.url)  # registered while loopback was allowed, say
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

    assert deliver(db, made.id, allowed_networks=()).result == "retry"

    assert receiver.requests == []  # nothing reached the receiver listening there
    refused = delivery(db, made.id)
    (attempt,) = refused.attempts
    assert attempt["status_code"] is None
    assert attempt["error"] == "Refused: 127.0.0.1 is a loopback address; not sent."
    assert (refused.status, refused.last_error) == ("pending", attempt["error"])
    # The operator allows loopback: the next attempt is delivered.
    make_due(db, made.id)
    assert deliver(db, made.id, allowed_networks=LOOPBACK).result == "delivered"
    assert len(receiver.requests) == 1


def test_ipv6_loopback_is_refused_even_with_ipv4_loopback_allowed(db, org, make_report):
    register(db, org, "http://[::1]:9/hooks")
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

    assert deliver(db, made.id, allowed_networks=LOOPBACK).result == "retry"
    (attempt,) = delivery(db, made.id).attempts
    assert (attempt["status_code"], attempt["error"]) == (
        None,
        "Refused: ::1 is a loopback address; not sent.",
    )


@pytest.mark.parametrize(
    "url, answer, error",
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            None,
            "169.254.169.254 is a link-local address",
        ),
        ("http://10.1.2.3:5432/", None, "10.1.2.3 is a private address"),
        (
            "http://metadata.invalid/",
            "169.254.169.254",
            "metadata.invalid resolves to 169.254.169.254, a link-local address",
        ),
        (
            "http://db.invalid:5432/",
            "172.16.0.9",
            "db.invalid resolves to 172.16.0.9, a private address",
        ),
        (
            "http://cgnat.invalid/",
            "100.64.3.4",
            "cgnat.invalid resolves to 100.64.3.4, a carrier-grade NAT address",
        ),
        ("http://v6.invalid/", "fe80::1", "v6.invalid resolves to fe80::1, a link-local address"),
    ],
)
def test_a_target_that_is_not_public_is_refused_at_delivery_before_any_connection(
    db, org, make_report, monkeypatch, url, answer, error
):
    """Endpoints registered before the rule, or names that resolve elsewhere since:
    the attempt is refused before a connection is opened (any would be recorded here,
    and refused, instead of reaching the network)."""
    connections = []

    def no_connection(address, *args, **kwargs):
        connections.append(address)
        raise ConnectionRefusedError("no connection in this test")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", no_connection)
    if answer is not None:
        monkeypatch.setattr(
            webhook_targets, "resolve", lambda host, port: [ipaddress.ip_address(answer)]
        )
    register(db, org, url)
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

    assert deliver(db, made.id).result == "retry"

    assert connections == []
    (attempt,) = delivery(db, made.id).attempts
    assert (attempt["status_code"], attempt["error"]) == (None, f"Refused: {error}; not sent.")


def test_a_name_is_resolved_once_and_the_checked_address_is_connected_to(
    db, org, make_report, receiver, monkeypatch
):
    """A rebinding resolver answers loopback first (checked, allowed here) and a
    link-local address afterwards: only one lookup is made, and the POST goes to the
    address that was checked. The name exists nowhere else (``.invalid``), so the
    request arriving at all shows the connection used the checked address."""
    answers = [["127.0.0.1"], ["169.254.169.254"]]
    looked_up = []

    def rebinding(host, port):
        looked_up.append((host, port))
        return [ipaddress.ip_address(a) for a in answers[min(len(looked_up), 2) - 1]]

    monkeypatch.setattr(webhook_targets, "resolve", rebinding)
    port = receiver.server.server_address[1]
    register(db, org, f"http://partner.invalid:{port}/hooks")
    (made,) = deliveries(db, complete_a_batch(db, org, make_report()))

    assert deliver(db, made.id).result == "delivered"

    assert looked_up == [("partner.invalid", port)]
    (request,) = receiver.requests
    assert request.headers["Host"] == f"partner.invalid:{port}"
    assert request.signed_with(SECRET)


@pytest.mark.parametrize(
    "url, problem",
    [
        ("https://example.com/hooks?x=1", None),
        ("http://127.0.0.1:8080/h", None),
        ("ftp://example.com/h", "http"),
        ("file:///etc/passwd", "http"),
        ("javascript:alert(1)", "http"),
        ("example.com/hooks", "http"),
        ("http:///nohost", "host"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://exa mple.com/", "spaces"),
        ("https://example.com/" + "x" * 2048, "at most"),
    ],
)
def test_only_absolute_http_urls_are_endpoints(url, problem):
    found = webhooks.url_problem(url)
    assert (found is None) if problem is None else (problem in found)


# --- which batches emit what ------------------------------------------------------------


def test_a_dry_run_emits_nothing(db, org, make_report, receiver):
    register(db, org, receiver.url)
    outbox = recording_outbox(db)
    batch_id, chunk_ids = accept(db, org, make_report(), valid(2), dry_run=True)
    for chunk_id in chunk_ids:
        run_chunk(outbox, PollingNotifier(), chunk_id)
    assert load_batch(db, batch_id).status == BatchStatus.COMPLETED
    assert deliveries(db) == [] and outbox.broker.deliveries == []


def test_a_batch_completed_at_accept_time_emits_import_completed(db, org, make_report):
    register(db, org, "https://example.com/hooks")
    every_record_invalid = [{"Supplier ID": "V1"}, {"Supplier Name": "no id"}]
    batch_id, chunk_ids = accept(db, org, make_report(), every_record_invalid)
    assert chunk_ids == []
    (made,) = deliveries(db, batch_id)  # committed with the batch itself
    assert made.event_type == webhooks.IMPORT_COMPLETED
    body = webhooks_body(made)
    assert (body["data"]["status"], body["data"]["failed_count"]) == ("completed", 2)
    # What the web does right after the commit: hand it to the broker.
    outbox = recording_outbox(db)
    assert outbox.hand_over_deliveries(batch_id) == 1
    assert outbox.broker.deliveries == [made.id]
    assert outbox.hand_over_deliveries(batch_id) == 0  # marked dispatched


def test_a_batch_that_ends_failed_emits_import_failed(db, org, make_report):
    failed_only = register(db, org, "https://example.com/failed", events=[webhooks.IMPORT_FAILED])
    register(db, org, "https://example.com/completed", events=[webhooks.IMPORT_COMPLETED])
    batch_id, (first, second) = accept(db, org, make_report(), valid(4), chunk_size=2)
    notifier, outbox = PollingNotifier(), recording_outbox(db)
    run_chunk(outbox, notifier, first)
    assert deliveries(db) == []  # not ended yet
    give_up_chunk(outbox, notifier, second, "OperationalError: server closed the connection")

    assert load_batch(db, batch_id).status == BatchStatus.FAILED
    (made,) = deliveries(db, batch_id)
    assert (made.endpoint_id, made.event_type) == (failed_only.id, webhooks.IMPORT_FAILED)
    assert outbox.broker.deliveries == [made.id]
    body = webhooks_body(made)
    assert body["event_type"] == "Import.Failed"
    assert (body["data"]["status"], body["data"]["created_count"]) == ("failed", 2)
    assert body["data"]["failed_count"] == 2


# --- the relay: nothing is lost when the hand-over is -------------------------------------


def test_the_relay_sends_a_due_delivery_nobody_handed_over(db, org, make_report, settings):
    with Receiver() as receiver:
        register(db, org, receiver.url)
        # The broker is down when the batch ends: the worker logs it and moves on.
        batch_id = complete_a_batch(db, org, make_report(), broker_down(db))
        (made,) = deliveries(db, batch_id)
        assert made.dispatched_at is None

        outbox = recording_outbox(db, settings)
        assert outbox.relay_webhooks() == 0  # left to the worker for a moment
        make_due(db, made.id, created_at=None)
        assert outbox.relay_webhooks() == 1
        assert outbox.broker.deliveries == [made.id]
        assert outbox.relay_webhooks() == 0  # handed over now
        make_due(db, made.id, dispatched_at=None)  # ...long ago, and still pending
        assert outbox.relay_webhooks() == 1
        assert outbox.relay_webhooks(broker_lost_queues=True) == 1
        assert outbox.broker.deliveries == [made.id] * 3

        assert deliver(db, made.id).result == "delivered"
        assert len(receiver.requests) == 1
    assert outbox.relay_webhooks(broker_lost_queues=True) == 0


def test_the_maintenance_pass_relays_webhooks(db, org, make_report, settings):
    register(db, org, "https://example.com/hooks")
    (made,) = deliveries(db, complete_a_batch(db, org, make_report(), broker_down(db)))
    make_due(db, made.id, created_at=None)
    outbox = recording_outbox(db, settings)
    assert outbox.maintain().webhooks == 1
    assert outbox.broker.deliveries == [made.id]


def test_an_attempt_made_before_the_hand_over_commits_keeps_its_retry(
    db, org, make_report, settings
):
    """A message can be consumed before the hand-over is marked: the mark must not hide
    the retry that attempt scheduled from the relay."""
    with Receiver(statuses=[500]) as receiver:
        register(db, org, receiver.url)

        attempting = recording_outbox(db)

        def send_and_attempt_at_once(delivery_ids):
            for delivery_id in delivery_ids:
                deliver(db, delivery_id)

        attempting.broker.send_deliveries = send_and_attempt_at_once
        (made,) = deliveries(db, complete_a_batch(db, org, make_report(), attempting))
        assert len(receiver.requests) == 1
        retrying = delivery(db, made.id)
        assert (retrying.attempt_count, retrying.dispatched_at) == (1, None)
        make_due(db, made.id)
        outbox = recording_outbox(db, settings)
        assert outbox.relay_webhooks() == 1
