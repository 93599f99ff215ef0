"""The outbox relay and the sweep of abandoned chunks.

Every worker runs both on a timer (see :class:`MaintenanceStep`); ``FOR UPDATE
SKIP LOCKED`` lets any number of them run at once without handing a chunk over
twice in one pass.

* **relay**: a chunk is committed with its batch before the client hears 200 or
  202; the web then hands it to the broker at once. Whatever the web could not
  hand over (broker down, web process died) is sent from here. And when the
  broker lost its queues (a Redis restarted without persistence: its marker key
  is gone), every chunk still waiting is sent again.
* **sweep**: a chunk left "processing" by a worker that died is put back to
  pending. Its row lock tells a dead worker from a slow one: a live worker holds
  the lock for as long as it writes the chunk.
* **webhook relay**: webhook deliveries are outbox rows too. Those that are due and
  that nobody handed over (a retry after a failed attempt, or one the worker or the
  web could not queue), or that were handed over long ago and are still pending,
  are sent from here.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from typing import Any

import sqlalchemy as sa
from celery import bootsteps

from importer import monitoring, webhooks
from importer.config import Settings
from importer.db import Database, utcnow
from importer.models import ChunkStatus, ImportChunk
from worker.dispatch import ChunkSender, WebhookSender, mark_dispatched

log = logging.getLogger(__name__)

BROKER_MARKER_KEY = "importer:broker-marker"
RELAY_BATCH = 500


def relay_once(
    db: Database, send: ChunkSender, settings: Settings, *, broker_lost_queues: bool = False
) -> int:
    """Send pending chunks the broker does not have; returns how many were sent."""
    now = utcnow()
    waiting = sa.and_(
        ImportChunk.dispatched_at.is_(None),
        ImportChunk.created_at < now - dt.timedelta(seconds=settings.relay_grace_seconds),
    )
    resend = ImportChunk.dispatched_at < now - dt.timedelta(
        seconds=settings.redispatch_after_seconds
    )
    if broker_lost_queues:
        resend = ImportChunk.dispatched_at.is_not(None)
    with db.session() as session:
        chunk_ids = list(
            session.scalars(
                sa.select(ImportChunk.id)
                .where(ImportChunk.status == ChunkStatus.PENDING, sa.or_(waiting, resend))
                .order_by(ImportChunk.id)
                .limit(RELAY_BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        if chunk_ids:
            send(chunk_ids)
            mark_dispatched(session, chunk_ids)
    if chunk_ids:
        log.info("relay sent %d chunk(s): %s", len(chunk_ids), chunk_ids[:10])
    return len(chunk_ids)


def relay_webhooks_once(
    db: Database, send: WebhookSender, settings: Settings, *, broker_lost_queues: bool = False
) -> int:
    """Send webhook deliveries that are due and that the broker does not have; returns
    how many were sent."""
    with db.session() as session:
        handed_over = webhooks.due_for_relay(
            session,
            grace_seconds=settings.relay_grace_seconds,
            redispatch_after_seconds=settings.redispatch_after_seconds,
            broker_lost_queues=broker_lost_queues,
            limit=RELAY_BATCH,
        )
        if handed_over:
            send([delivery_id for delivery_id, _ in handed_over])
            webhooks.mark_dispatched(session, handed_over)
    if handed_over:
        log.info(
            "relay sent %d webhook delivery(ies): %s",
            len(handed_over),
            [delivery_id for delivery_id, _ in handed_over[:10]],
        )
    return len(handed_over)


def sweep_once(db: Database, settings: Settings) -> int:
    """Put chunks abandoned mid-write back to pending; returns how many."""
    cutoff = utcnow() - dt.timedelta(seconds=settings.stuck_after_seconds)
    with db.session() as session:
        chunk_ids = list(
            session.scalars(
                sa.select(ImportChunk.id)
                .where(
                    ImportChunk.status == ChunkStatus.PROCESSING, ImportChunk.started_at < cutoff
                )
                .with_for_update(skip_locked=True)
            )
        )
        if chunk_ids:
            session.execute(
                sa.update(ImportChunk)
                .where(ImportChunk.id.in_(chunk_ids))
                .values(status=ChunkStatus.PENDING, dispatched_at=None)
            )
    if chunk_ids:
        log.warning("sweep re-queued %d abandoned chunk(s): %s", len(chunk_ids), chunk_ids[:10])
    return len(chunk_ids)


def broker_lost_queues(redis_client: Any) -> bool:
    """True once after the broker came back empty (the marker lives as long as its queues)."""
    return bool(redis_client.set(BROKER_MARKER_KEY, uuid.uuid4().hex, nx=True))


class Maintenance:
    """One pass of heartbeat + sweep + relay; called on the worker's timer."""

    def __init__(
        self,
        settings: Settings,
        send: ChunkSender,
        redis_client: Any = None,
        send_webhooks: WebhookSender | None = None,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.send = send
        self.send_webhooks = send_webhooks
        self.redis = redis_client
        self.db = Database.from_settings(settings)
        #: node, pid, concurrency, queues, started_at: what the heartbeat reports.
        self.identity = identity

    def beat(self, stopped: bool = False) -> None:
        if self.identity is None:
            return
        try:
            with self.db.session() as session:
                monitoring.beat(session, stopped=stopped, **self.identity)
        except Exception:
            log.warning("could not record this worker's heartbeat", exc_info=True)

    def run(self) -> None:
        self.beat()
        lost = False
        try:
            sweep_once(self.db, self.settings)
            lost = broker_lost_queues(self.redis) if self.redis is not None else False
            if lost:
                log.warning("the broker came back without its queues; re-sending waiting work")
            relay_once(self.db, self.send, self.settings, broker_lost_queues=lost)
        except Exception:
            # The database or the broker is down: try again on the next tick.
            log.warning("relay/sweep pass failed", exc_info=True)
        if self.send_webhooks is None:
            return
        try:
            relay_webhooks_once(self.db, self.send_webhooks, self.settings, broker_lost_queues=lost)
        except Exception:
            log.warning("webhook relay pass failed", exc_info=True)


class MaintenanceStep(bootsteps.StartStopStep):
    """Runs :class:`Maintenance` every ``IMPORTER_RELAY_INTERVAL_SECONDS`` in the
    worker's main process, on the consumer's own timer (no extra thread or process)."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry: Any = None
        self.maintenance: Maintenance | None = None

    def start(self, consumer: Any) -> None:
        from worker.celery_app import settings_of
        from worker.dispatch import CelerySender, CeleryWebhookSender

        settings = settings_of(consumer.app)
        redis_client = None
        if settings.redis_url:
            import redis

            redis_client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        queues = sorted(queue.name for queue in consumer.task_consumer.queues)
        maintenance = Maintenance(
            settings,
            CelerySender(consumer.app),
            redis_client,
            send_webhooks=CeleryWebhookSender(consumer.app),
            identity={
                "node": consumer.hostname,
                "pid": os.getpid(),
                "concurrency": getattr(consumer.controller, "concurrency", None) or 1,
                "queues": queues,
                "started_at": utcnow(),
            },
        )
        maintenance.run()
        self.maintenance = maintenance
        self.timer_entry = consumer.timer.call_repeatedly(
            settings.relay_interval_seconds, maintenance.run
        )

    def stop(self, consumer: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, consumer: Any) -> None:
        if self.maintenance is not None:
            self.maintenance.beat(stopped=True)  # shown as stopped, not lost
            self.maintenance = None
