"""Handing chunks and webhook deliveries to the broker. Used by the web (right after
a batch is committed), the workers (deliveries, after the commit that ended a batch),
the relay (for whatever they could not hand over), and an operator's re-drive
(``redrive``: ``importer batches retry`` and the ops page's Retry)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session

from importer import batches, webhooks
from importer.db import Database, utcnow
from importer.models import ChunkStatus, ImportChunk
from worker.celery_app import (
    DELIVER_WEBHOOK_TASK,
    IMPORT_CHUNK_TASK,
    IMPORTS_QUEUE,
    WEBHOOKS_QUEUE,
)

log = logging.getLogger(__name__)


class ChunkSender(Protocol):
    def __call__(self, chunk_ids: Sequence[int]) -> None: ...


class CelerySender:
    """Publishes one ``import_chunk`` message per chunk id."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def __call__(self, chunk_ids: Sequence[int]) -> None:
        if not chunk_ids:
            return
        with self.celery.producer_or_acquire() as producer:
            for chunk_id in chunk_ids:
                self.celery.send_task(
                    IMPORT_CHUNK_TASK, args=[chunk_id], queue=IMPORTS_QUEUE, producer=producer
                )


def mark_dispatched(session: Session, chunk_ids: Sequence[int], handed_over: bool = True) -> None:
    """Record that chunks were handed to the broker now (or, with ``handed_over=False``,
    take that back, so the relay sends them)."""
    if chunk_ids:
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id.in_(chunk_ids))
            .values(dispatched_at=utcnow() if handed_over else None)
        )


class WebhookSender(Protocol):
    def __call__(self, delivery_ids: Sequence[str]) -> None: ...


class CeleryWebhookSender:
    """Publishes one ``deliver_webhook`` message per delivery id."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def __call__(self, delivery_ids: Sequence[str]) -> None:
        if not delivery_ids:
            return
        with self.celery.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                self.celery.send_task(
                    DELIVER_WEBHOOK_TASK,
                    args=[delivery_id],
                    queue=WEBHOOKS_QUEUE,
                    producer=producer,
                )


def hand_over_deliveries(session: Session, batch_id: str, send: WebhookSender) -> int:
    """Send the batch's new webhook deliveries to the broker and mark them, in the
    caller's transaction (commit it next). Raises when the broker is unreachable:
    the caller rolls back and the relay sends them later."""
    handed_over = webhooks.undispatched(session, batch_id)
    if handed_over:
        send([delivery_id for delivery_id, _ in handed_over])
        webhooks.mark_dispatched(session, handed_over)
    return len(handed_over)


def hand_over_chunks(session: Session, chunk_ids: Sequence[int], send: ChunkSender) -> list[int]:
    """Send those of ``chunk_ids`` still pending and not handed over, and mark them, in
    the caller's transaction (commit it next). Row-locked, skipping locked rows, so a
    relay pass at the same time does not send them too. Raises when the broker is
    unreachable: the caller rolls back and the relay sends them later."""
    if not chunk_ids:
        return []
    ready = list(
        session.scalars(
            sa.select(ImportChunk.id)
            .where(
                ImportChunk.id.in_(chunk_ids),
                ImportChunk.status == ChunkStatus.PENDING,
                ImportChunk.dispatched_at.is_(None),
            )
            .order_by(ImportChunk.id)
            .with_for_update(skip_locked=True)
        )
    )
    if ready:
        send(ready)
        mark_dispatched(session, ready)
    return ready


@dataclass(frozen=True)
class Redriven:
    """A re-drive (``importer.batches.redrive_batch``) and the hand-over that followed."""

    outcome: batches.RedriveOutcome
    #: Chunks handed to the broker right after the re-drive's commit.
    sent: int
    #: Why they could not be handed over (the relay sends them), or None.
    send_error: str | None = None

    def describe(self) -> str:
        text = self.outcome.describe()
        if self.send_error is not None:
            return (
                f"{text} The broker could not be reached ({self.send_error}); "
                f"the relay will send the {len(self.outcome.to_send)} chunk(s) when it is back."
            )
        if self.sent:
            return f"{text} Sent {self.sent} chunk(s) to the broker."
        return text

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self.outcome)
        data["to_send"] = list(self.outcome.to_send)
        data.update(
            changed=self.outcome.changed,
            sent=self.sent,
            send_error=self.send_error,
            message=self.describe(),
        )
        return data


def redrive(db: Database, batch_id: str, send: ChunkSender | None) -> Redriven:
    """Re-drive a batch (committed), then hand its chunks to the broker through ``send``
    (None: leave them to the relay). Raises ``importer.batches.BatchNotFound``."""
    with db.session() as session:
        outcome = batches.redrive_batch(session, batch_id)
    if send is None or not outcome.to_send:
        return Redriven(outcome, 0)
    try:
        with db.session() as session:
            sent = hand_over_chunks(session, outcome.to_send, send)
    except Exception as error:
        log.warning("could not queue re-driven batch %s now; the relay will", batch_id)
        return Redriven(outcome, 0, f"{type(error).__name__}: {error}"[:300])
    return Redriven(outcome, len(sent))
