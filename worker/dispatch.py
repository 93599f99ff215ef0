"""Handing chunks and webhook deliveries to the broker. Used by the web (right after
a batch is committed), the workers (deliveries, after the commit that ended a batch)
and the relay (for whatever they could not hand over)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session

from importer import webhooks
from importer.db import utcnow
from importer.models import ImportChunk
from worker.celery_app import (
    DELIVER_WEBHOOK_TASK,
    IMPORT_CHUNK_TASK,
    IMPORTS_QUEUE,
    WEBHOOKS_QUEUE,
)


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


def mark_dispatched(session: Session, chunk_ids: Sequence[int]) -> None:
    if chunk_ids:
        session.execute(
            sa.update(ImportChunk)
            .where(ImportChunk.id.in_(chunk_ids))
            .values(dispatched_at=utcnow())
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
