"""Handing chunks to the broker. Used by the web (right after a batch is committed)
and by the relay (for whatever the web could not hand over)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import Session

from importer.db import utcnow
from importer.models import ImportChunk
from worker.celery_app import IMPORT_CHUNK_TASK, IMPORTS_QUEUE


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
