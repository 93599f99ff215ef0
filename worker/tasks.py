"""Celery tasks. Each is thin: it looks its rows up by id, calls a plain function
from ``importer.batches``, and records the outcome."""

from __future__ import annotations

import functools
import logging

from celery import Task

from importer import batches
from importer.db import Database
from importer.notify import Notifier, make_notifier
from worker.app import celery
from worker.celery_app import IMPORT_CHUNK_TASK, settings_of

log = logging.getLogger(__name__)


@functools.cache
def runtime() -> tuple[Database, Notifier]:
    """This worker's database and notifier (the Database re-creates its engine after a fork)."""
    settings = settings_of(celery)
    return Database.from_settings(settings), make_notifier(settings.redis_url)


def run_chunk(db: Database, notifier: Notifier, chunk_id: int) -> batches.ChunkFinished | None:
    """Claim a chunk, write it, and wake whoever waits for its batch.

    Safe to run any number of times for the same chunk: a finished chunk is
    skipped, and a duplicate that arrives while another worker writes the chunk
    waits for that write, then finds the chunk finished.
    """
    with db.session() as session:
        if not batches.claim_chunk(session, chunk_id):
            log.info("chunk %s is already finished; nothing to do", chunk_id)
            return None
    with db.session() as session:
        finished = batches.write_chunk(session, chunk_id)
    if finished is not None and finished.batch_done:
        notifier.publish_done(finished.batch_id)
    return finished


def give_up_chunk(db: Database, notifier: Notifier, chunk_id: int, reason: str) -> None:
    with db.session() as session:
        finished = batches.fail_chunk(session, chunk_id, reason)
    if finished is not None and finished.batch_done:
        notifier.publish_done(finished.batch_id)


@celery.task(name=IMPORT_CHUNK_TASK, bind=True, max_retries=None)
def import_chunk(self: Task, chunk_id: int) -> None:
    db, notifier = runtime()
    settings = settings_of(celery)
    try:
        run_chunk(db, notifier, chunk_id)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if self.request.retries >= settings.chunk_max_retries:
            log.exception("chunk %s failed after %s retries", chunk_id, self.request.retries)
            give_up_chunk(db, notifier, chunk_id, reason)
            return
        countdown = min(2**self.request.retries, 60)
        log.warning("chunk %s failed (%s); retrying in %ss", chunk_id, reason, countdown)
        try:
            with db.session() as session:
                batches.record_chunk_error(session, chunk_id, reason)
        except Exception:
            log.warning("could not record the failure of chunk %s", chunk_id, exc_info=True)
        raise self.retry(exc=exc, countdown=countdown) from exc
