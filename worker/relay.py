"""The maintenance timer every worker runs: its heartbeat, then one
``importer.outbox.Outbox.maintain`` pass (the sweep of abandoned chunks, the relay of
what the broker never got or lost, a release pass of the bulk lane, the webhook
relay), and, at most once per ``IMPORTER_PURGE_INTERVAL_SECONDS`` for the whole
deployment, the retention purge (``importer.retention.Purger``). ``FOR UPDATE SKIP
LOCKED`` and the scheduler's lock let any number of workers run it at once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import bootsteps

from importer import monitoring
from importer.broker import BULK_QUEUE, INTERACTIVE_QUEUE, CeleryBroker
from importer.config import Settings
from importer.db import Database, utcnow
from importer.outbox import Outbox
from importer.retention import Purger

log = logging.getLogger(__name__)


def bulk_slots(settings: Settings, concurrency: int, queues: list[str]) -> int:
    """Of a worker's processes, how many the bulk lane may fill: all but
    ``IMPORTER_INTERACTIVE_SLOTS`` when it also serves the interactive lane."""
    if BULK_QUEUE not in queues:
        return 0
    if INTERACTIVE_QUEUE not in queues:
        return concurrency
    return max(concurrency - settings.interactive_slots, 1)


class Maintenance:
    """One pass of heartbeat + outbox maintenance; called on the worker's timer."""

    def __init__(
        self, settings: Settings, outbox: Outbox, identity: dict[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        #: node, pid, concurrency, bulk_slots, queues, started_at: the heartbeat's facts.
        self.identity = identity
        self.purger = Purger(outbox.db, settings)

    def beat(self, stopped: bool = False) -> None:
        if self.identity is None:
            return
        try:
            with self.outbox.db.session() as session:
                monitoring.beat(session, stopped=stopped, **self.identity)
        except Exception:
            log.warning("could not record this worker's heartbeat", exc_info=True)

    def run(self) -> None:
        self.beat()
        self.outbox.maintain()
        self.purger.maybe_run()


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

        settings = settings_of(consumer.app)
        queues = [queue.name for queue in consumer.task_consumer.queues]
        concurrency = getattr(consumer.controller, "concurrency", None) or 1
        outbox = Outbox(
            settings, Database.from_settings(settings), CeleryBroker(settings, consumer.app)
        )
        maintenance = Maintenance(
            settings,
            outbox,
            identity={
                "node": consumer.hostname,
                "pid": os.getpid(),
                "concurrency": concurrency,
                "bulk_slots": bulk_slots(settings, concurrency, queues),
                "queues": sorted(queues),
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
