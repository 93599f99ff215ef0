"""Completion webhooks: endpoints, the deliveries a batch's end creates, and one attempt.

    record_batch_end    a batch ended: one pending delivery per matching endpoint,
                        in the transaction that ends the batch (the outbox)
    undispatched        deliveries of a batch nobody handed to the broker yet
    due_for_relay       deliveries the relay hands (again) to the broker
    mark_dispatched     remember the hand-over
    attempt_delivery    POST the stored body once, record the attempt, then mark it
                        delivered, schedule the next attempt, or give up

Which addresses a delivery may reach (public ones, and the operator's allowed
networks) is ``importer.webhook_targets``: checked at registration and again, after
resolving the name, at every attempt.

Like ``importer.batches``, every function here only adds and flushes; the caller
owns the transaction. Retries are not broker countdowns: a failed attempt leaves
the row pending with ``next_attempt_at`` (exponential backoff) and no
``dispatched_at``, and the relay hands it over again once it is due, so neither a
broker outage nor a crash loses one. An attempt holds the row's lock
(``SELECT ... FOR UPDATE``) for its whole duration, and only attempts a pending
delivery that is due, so two messages for one delivery never attempt it at once and
a duplicate message after an attempt finds nothing to do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import ids
from importer.config import IPNetwork
from importer.db import unix, utcnow
from importer.models import (
    BatchStatus,
    DeliveryStatus,
    ImportBatch,
    WebhookDelivery,
    WebhookEndpoint,
)
from importer.outcomes import batch_summary
from importer.webhook_targets import TargetRefused
from importer.webhook_targets import post as checked_post

log = logging.getLogger(__name__)

IMPORT_COMPLETED = "Import.Completed"
IMPORT_FAILED = "Import.Failed"
EVENT_TYPES = (IMPORT_COMPLETED, IMPORT_FAILED)
_EVENT_OF_STATUS = {BatchStatus.COMPLETED: IMPORT_COMPLETED, BatchStatus.FAILED: IMPORT_FAILED}

SIGNATURE_HEADER = "X-Importer-Signature"
EVENT_HEADER = "X-Importer-Event"
DELIVERY_HEADER = "X-Importer-Delivery"
TIMESTAMP_HEADER = "X-Importer-Timestamp"
USER_AGENT = "bulk-importer-webhooks/1"

#: Seconds to connect, and to wait for each read of the answer.
TIMEOUT_SECONDS = 10.0
#: The wait after attempt n (1-based) is FIRST_RETRY * FACTOR**(n-1), at most MAX_RETRY.
FIRST_RETRY_SECONDS = 10.0
BACKOFF_FACTOR = 3.0
MAX_RETRY_SECONDS = 3600.0
MAX_URL_LENGTH = 2048
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 255
_MAX_ERROR_LENGTH = 500


# --- endpoints ------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook endpoint, or None: only absolute http(s) URLs."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if any(character.isspace() or ord(character) < 32 for character in url):
        return "must not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an http:// or https:// URL"
    if not parts.hostname:
        return "must name a host"
    return None


def create_endpoint(
    session: Session, org_id: str, *, url: str, events: Sequence[str], secret: str
) -> WebhookEndpoint:
    """A new endpoint (``url`` checked by the caller with :func:`url_problem`)."""
    endpoint = WebhookEndpoint(
        id=ids.new_id(ids.WEBHOOK),
        org_id=org_id,
        url=url,
        events=[event for event in EVENT_TYPES if event in events],
        secret=secret,
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def active_endpoint(session: Session, org_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    return session.scalars(
        sa.select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.org_id == org_id,
            WebhookEndpoint.disabled_at.is_(None),
        )
    ).one_or_none()


def disable_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """No new deliveries; its pending ones are given up when their turn comes."""
    endpoint.disabled_at = utcnow()
    session.flush()


# --- events -----------------------------------------------------------------------


def record_batch_end(session: Session, batch_id: str) -> int:
    """A batch just ended (completed or failed): add one pending delivery per endpoint
    of its org subscribed to the event, in the caller's transaction. A dry run emits
    nothing. Returns how many deliveries were added.

    The common case (an org without webhooks) costs one query.
    """
    endpoints = session.scalars(
        sa.select(WebhookEndpoint)
        .join(ImportBatch, ImportBatch.org_id == WebhookEndpoint.org_id)
        .where(
            ImportBatch.id == batch_id,
            ImportBatch.dry_run == sa.false(),
            WebhookEndpoint.disabled_at.is_(None),
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()
    if not endpoints:
        return 0
    # The batch's counts and status were just changed by UPDATE statements: re-read them.
    batch = session.scalars(
        sa.select(ImportBatch)
        .where(ImportBatch.id == batch_id)
        .execution_options(populate_existing=True)
    ).one()
    event_type = _EVENT_OF_STATUS.get(BatchStatus(batch.status))
    if event_type is None:
        raise ValueError(f"batch {batch_id} has not ended (status {batch.status})")
    matching = [endpoint for endpoint in endpoints if event_type in endpoint.events]
    if not matching:
        return 0
    now = utcnow()
    event_id = ids.new_id(ids.EVENT)
    body = orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": unix(batch.completed_at or now),
            "data": batch_summary(batch),
        }
    )
    session.execute(
        sa.insert(WebhookDelivery),
        [
            dict(
                id=ids.new_id(ids.DELIVERY),
                endpoint_id=endpoint.id,
                org_id=batch.org_id,
                batch_id=batch.id,
                event_id=event_id,
                event_type=event_type,
                body=body,
                status=DeliveryStatus.PENDING,
                attempt_count=0,
                next_attempt_at=now,
                created_at=now,
                attempts=[],
            )
            for endpoint in matching
        ],
    )
    log.info("batch %s: %s for %d webhook endpoint(s)", batch_id, event_type, len(matching))
    return len(matching)


# --- hand-over to the broker --------------------------------------------------------

#: (delivery id, its attempt_count when it was handed over)
Handover = tuple[str, int]


def undispatched(session: Session, batch_id: str) -> list[Handover]:
    """The batch's pending deliveries nobody handed to the broker yet (row-locked
    where the database can, so a relay running at the same time skips them)."""
    return [
        (row.id, row.attempt_count)
        for row in session.execute(
            sa.select(WebhookDelivery.id, WebhookDelivery.attempt_count)
            .where(
                WebhookDelivery.batch_id == batch_id,
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.dispatched_at.is_(None),
            )
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
            .with_for_update(skip_locked=True)
        )
    ]


def due_for_relay(
    session: Session,
    *,
    grace_seconds: float,
    redispatch_after_seconds: float,
    broker_lost_queues: bool = False,
    limit: int = 500,
) -> list[Handover]:
    """Pending deliveries that are due and that the broker does not (or no longer
    seems to) have: never handed over (a new one only after ``grace_seconds``, which
    it leaves to the worker or the web that created it; a retry at once), or handed
    over more than ``redispatch_after_seconds`` ago (every handed-over one when the
    broker lost its queues). Row-locked, skipping locked rows: an attempt in progress
    holds its row."""
    now = utcnow()
    never_sent = sa.and_(
        WebhookDelivery.dispatched_at.is_(None),
        sa.or_(
            WebhookDelivery.attempt_count > 0,
            WebhookDelivery.created_at < now - dt.timedelta(seconds=grace_seconds),
        ),
    )
    resend = (
        WebhookDelivery.dispatched_at.is_not(None)
        if broker_lost_queues
        else WebhookDelivery.dispatched_at < now - dt.timedelta(seconds=redispatch_after_seconds)
    )
    return [
        (row.id, row.attempt_count)
        for row in session.execute(
            sa.select(WebhookDelivery.id, WebhookDelivery.attempt_count)
            .where(
                WebhookDelivery.status == DeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now,
                sa.or_(never_sent, resend),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]


def mark_dispatched(session: Session, handed_over: Sequence[Handover]) -> None:
    """Remember that these were handed to the broker, unless an attempt already ran
    since (the message may be consumed before this commits): then the row says what
    happens next, and must not look handed over."""
    if handed_over:
        table = cast(sa.Table, WebhookDelivery.__table__)
        session.execute(
            sa.update(table)
            .where(
                table.c.id == sa.bindparam("delivery_id"),
                table.c.attempt_count == sa.bindparam("seen_attempts"),
                table.c.status == DeliveryStatus.PENDING.value,
            )
            .values(dispatched_at=utcnow()),
            [
                {"delivery_id": delivery_id, "seen_attempts": attempts}
                for delivery_id, attempts in handed_over
            ],
        )


# --- one attempt ----------------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_delay(attempts_made: int) -> float:
    """Seconds to wait after the ``attempts_made``-th failed attempt."""
    return min(FIRST_RETRY_SECONDS * BACKOFF_FACTOR ** (attempts_made - 1), MAX_RETRY_SECONDS)


#: ``post(url, body, headers, timeout, allowed_networks)`` -> the HTTP status code;
#: raises when no answer came (``TargetRefused`` when the address may not be reached).
Post = Callable[[str, bytes, dict[str, str], float, Sequence[IPNetwork]], int]


def http_post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allowed_networks: Sequence[IPNetwork] = (),
) -> int:
    """POST to the address the URL's name resolves to, once checked; never follows a
    redirect; the answer's body is not read."""
    return checked_post(url, body, headers, timeout, allowed_networks)


#: "delivered", "retry" (another attempt is scheduled), "failed" (given up), or
#: "skipped" (nothing to do: not pending, not due, or unknown).
AttemptResult = Literal["delivered", "retry", "failed", "skipped"]


@dataclass(frozen=True)
class AttemptOutcome:
    result: AttemptResult
    attempt: dict[str, Any] | None = None


def attempt_delivery(
    session: Session,
    delivery_id: str,
    *,
    max_attempts: int = 8,
    post: Post = http_post,
    timeout: float = TIMEOUT_SECONDS,
    allowed_networks: Sequence[IPNetwork] = (),
) -> AttemptOutcome:
    """Attempt one delivery once, in the caller's transaction.

    The delivery's row lock is waited for and held through the POST, so a second
    message for it waits, then finds it delivered or not due yet. A delivery whose
    endpoint was disabled is given up without an attempt. A URL whose address may not
    be reached (not public, and not in ``allowed_networks``) is a failed attempt with
    nothing sent; it is retried like any other, as the name may resolve elsewhere later.
    """
    delivery = session.scalars(
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    now = utcnow()
    if (
        delivery is None
        or delivery.status != DeliveryStatus.PENDING
        or delivery.next_attempt_at is None
        or delivery.next_attempt_at > now
    ):
        return AttemptOutcome("skipped")
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    if endpoint is None or endpoint.disabled_at is not None:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        delivery.last_error = "The endpoint was disabled; not attempted."
        session.flush()
        return AttemptOutcome("failed")
    problem = url_problem(endpoint.url)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(endpoint.secret, delivery.body),
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: delivery.id,
        TIMESTAMP_HEADER: str(unix(now)),
    }
    status_code: int | None = None
    error: str | None = None
    started = time.monotonic()
    if problem is not None:
        error = f"The endpoint URL {problem}; not sent."
    else:
        try:
            status_code = post(endpoint.url, delivery.body, headers, timeout, allowed_networks)
        except TargetRefused as refused:
            error = f"Refused: {refused}; not sent."[:_MAX_ERROR_LENGTH]
        except Exception as failure:  # no answer: refused, timed out, TLS, ...
            error = f"{type(failure).__name__}: {failure}"[:_MAX_ERROR_LENGTH]
    attempt = {
        "at": unix(now),
        "status_code": status_code,
        "error": error,
        "duration_ms": round((time.monotonic() - started) * 1000),
    }
    delivery.attempts = [*delivery.attempts, attempt]
    delivery.attempt_count += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    delivery.dispatched_at = None
    finished = utcnow()
    if status_code is not None and 200 <= status_code < 300:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = finished
        delivery.next_attempt_at = None
        result: AttemptResult = "delivered"
    elif delivery.attempt_count >= max_attempts or problem is not None:
        delivery.status = DeliveryStatus.FAILED
        delivery.next_attempt_at = None
        result = "failed"
    else:
        delivery.next_attempt_at = finished + dt.timedelta(
            seconds=retry_delay(delivery.attempt_count)
        )
        result = "retry"
    session.flush()
    log_level = logging.INFO if result == "delivered" else logging.WARNING
    log.log(
        log_level,
        "webhook delivery %s (attempt %d) to %s: %s, %s",
        delivery.id,
        delivery.attempt_count,
        endpoint.url,
        status_code if status_code is not None else error,
        result,
    )
    return AttemptOutcome(result, attempt)
