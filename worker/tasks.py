"""Celery tasks. Each is thin: it looks its rows up by id, calls a plain function
from ``importer.batches`` or ``importer.webhooks``, and records the outcome.

The tasks are shared tasks: they belong to whichever app the worker built
(``worker.celery_app.create_celery``), so importing this module builds nothing."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence

from celery import Celery, Task, shared_task

from importer import batches, logs, metrics, webhooks
from importer.broker import DELIVER_WEBHOOK_TASK, IMPORT_CHUNK_TASK, CeleryBroker
from importer.config import IPNetwork
from importer.db import Database
from importer.notify import Notifier, make_notifier
from importer.outbox import Outbox
from worker.celery_app import settings_of

log = logging.getLogger(__name__)


@functools.cache
def runtime(app: Celery) -> tuple[Outbox, Notifier]:
    """This worker's outbox (its database re-creates its engine after a fork) and
    notifier."""
    settings = settings_of(app)
    outbox = Outbox(settings, Database.from_settings(settings), CeleryBroker(settings, app))
    return outbox, make_notifier(settings.redis_url)


def after_commit(outbox: Outbox, notifier: Notifier, finished: batches.ChunkFinished) -> None:
    """What follows a finished chunk's commit: count it (once); wake whoever waits for
    its batch when it was the last; and hand its bulk slot and the batch's webhooks
    over (``Outbox.after_chunk``)."""
    count_finished(finished)
    if finished.batch_done:
        notifier.publish_done(finished.batch_id)
    outbox.after_chunk(finished)


def count_finished(finished: batches.ChunkFinished) -> None:
    """The metrics of a chunk whose transaction committed: its records and errors
    (dry runs aside), and its batch's duration when it was the last chunk."""
    if not finished.dry_run:
        metrics.count_records(
            created=finished.created,
            updated=finished.updated,
            failed=finished.failed,
            errors=finished.error_codes,
        )
    if finished.batch_status is not None and finished.batch_seconds is not None:
        metrics.observe_batch_end(finished.batch_status, finished.batch_seconds)


def run_chunk(
    outbox: Outbox, notifier: Notifier, chunk_id: int, worker: str | None = None
) -> batches.ChunkFinished | None:
    """Claim a chunk, write it, and wake whoever waits for its batch (then hand the
    freed bulk slot and the batch's webhooks over).

    Safe to run any number of times for the same chunk: a finished chunk is
    skipped, and a duplicate that arrives while another worker writes the chunk
    waits for that write, then finds the chunk finished.
    """
    started = time.perf_counter()
    with outbox.db.session() as session:
        claimed = batches.claim_chunk(session, chunk_id, worker)
        if claimed is None:
            log.info("chunk %s is already finished; nothing to do", chunk_id)
            return None
    if claimed.waited_seconds is not None:
        metrics.observe_chunk_wait(claimed.lane.value, claimed.waited_seconds)
    logs.bind(batch_id=claimed.batch_id)
    with outbox.db.session() as session:
        finished = batches.write_chunk(session, chunk_id)
    if finished is not None:
        metrics.observe_chunk(time.perf_counter() - started)
        after_commit(outbox, notifier, finished)
    return finished


def give_up_chunk(outbox: Outbox, notifier: Notifier, chunk_id: int, reason: str) -> None:
    with outbox.db.session() as session:
        finished = batches.fail_chunk(session, chunk_id, reason)
    if finished is not None:
        after_commit(outbox, notifier, finished)


def run_delivery(
    db: Database,
    delivery_id: str,
    max_attempts: int,
    post: webhooks.Post = webhooks.http_post,
    allowed_networks: Sequence[IPNetwork] = (),
) -> webhooks.AttemptOutcome:
    """Attempt a webhook delivery once (see ``importer.webhooks.attempt_delivery``).

    Safe to run any number of times: only a pending delivery that is due is
    attempted, under its row lock. A failed attempt leaves it pending with its next
    attempt scheduled; the relay queues it again when that time comes.
    """
    with db.session() as session:
        return webhooks.attempt_delivery(
            session,
            delivery_id,
            max_attempts=max_attempts,
            post=post,
            allowed_networks=allowed_networks,
        )


def attempt_chunk(
    outbox: Outbox,
    notifier: Notifier,
    chunk_id: int,
    *,
    retries: int,
    max_retries: int,
    worker: str | None = None,
) -> float | None:
    """One attempt at a chunk, as the task makes it. Returns None when there is
    nothing more to do (written, already finished, or given up after the last retry:
    its records fail with ``write_failed``), or the seconds to wait before the next
    attempt (exponential, at most a minute), the failure recorded on the chunk."""
    try:
        run_chunk(outbox, notifier, chunk_id, worker=worker)
        return None
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if retries >= max_retries:
            log.exception("chunk %s failed after %s retries", chunk_id, retries)
            give_up_chunk(outbox, notifier, chunk_id, reason)
            return None
        countdown = float(min(2**retries, 60))
        log.warning("chunk %s failed (%s); retrying in %ss", chunk_id, reason, countdown)
        try:
            with outbox.db.session() as session:
                batches.record_chunk_error(session, chunk_id, reason)
        except Exception:
            log.warning("could not record the failure of chunk %s", chunk_id, exc_info=True)
        return countdown


@shared_task(name=IMPORT_CHUNK_TASK, bind=True, max_retries=None)
def import_chunk(self: Task, chunk_id: int) -> None:
    outbox, notifier = runtime(self.app)
    countdown = attempt_chunk(
        outbox,
        notifier,
        chunk_id,
        retries=self.request.retries,
        max_retries=outbox.settings.chunk_max_retries,
        worker=self.request.hostname,
    )
    if countdown is not None:
        raise self.retry(countdown=countdown)


@shared_task(name=DELIVER_WEBHOOK_TASK, bind=True)
def deliver_webhook(self: Task, delivery_id: str) -> None:
    outbox, _ = runtime(self.app)
    settings = outbox.settings
    run_delivery(
        outbox.db,
        delivery_id,
        settings.webhook_max_attempts,
        allowed_networks=settings.webhook_allow_networks,
    )
