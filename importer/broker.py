"""The message broker as the domain sees it: its queues (the lanes), the task names the
workers answer to, the Celery configuration every process shares, and the one way to
send to it (:class:`CeleryBroker`).

Only ``importer.outbox`` sends anything through a :class:`Broker`; the web, the
workers' timer and the operator commands all go through the outbox. Messages carry
ids only: the chunk and delivery rows are the truth, and a message is just a nudge
to look at one of them.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kombu.entity import Queue

from importer.config import Settings
from importer.models import Lane

if TYPE_CHECKING:
    import redis
    from celery import Celery

log = logging.getLogger(__name__)

INTERACTIVE_QUEUE = Lane.INTERACTIVE.value
BULK_QUEUE = Lane.BULK.value
#: Webhook deliveries have a queue of their own, so a backlog of them (a slow or
#: unreachable receiver) never stands in front of the chunks.
WEBHOOKS_QUEUE = "webhooks"
#: Every queue, in the order a free worker process asks for them. A bulk message only
#: waits in Redis while a bulk slot is free (``importer.scheduler`` releases no more),
#: so asking for it first gives the bulk lane its own processes back, and the processes
#: beyond the bulk slots stay free for the interactive lane; interactive work borrows
#: what bulk does not need. (Interactive first would let a stream of small batches
#: starve the bulk lane: see README, "Lanes and fair share".)
QUEUES = (BULK_QUEUE, INTERACTIVE_QUEUE, WEBHOOKS_QUEUE)
IMPORT_CHUNK_TASK = "worker.tasks.import_chunk"
DELIVER_WEBHOOK_TASK = "worker.tasks.deliver_webhook"
#: Lives in Redis as long as its queues do: missing means Redis came back empty.
BROKER_MARKER_KEY = "importer:broker-marker"


@dataclass(frozen=True)
class ChunkMessage:
    """One ``import_chunk`` message: the chunk to look at, and (for people watching
    the tasks in Flower or the logs) whose work it is."""

    chunk_id: int
    batch_id: str
    org_id: str
    lane: Lane


class Broker(Protocol):
    def send_chunks(self, messages: Sequence[ChunkMessage]) -> None:
        """Publish one message per chunk, on its lane's queue. Raises when the broker
        cannot be reached."""

    def send_deliveries(self, delivery_ids: Sequence[str]) -> None:
        """Publish one ``deliver_webhook`` message per delivery."""

    def ping(self) -> None:
        """Raise unless the broker answers (quickly)."""

    def lost_queues(self) -> bool:
        """True (once) when the broker came back without its queues."""

    def depths(self) -> dict[str, int | None]:
        """Messages waiting in each queue (None: the broker cannot be asked)."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration of every process: producers (web, operator commands)
    and the workers alike."""
    transport_options: dict[str, Any]
    transport: str | None = None
    if settings.is_embedded:
        # kombu's filesystem transport: one file per message in a local folder,
        # shared by the web and worker processes of one machine; our subclass writes
        # each file whole and sets bad ones aside (see importer/embedded_broker.py).
        transport = "importer.embedded_broker:Transport"
        folder = settings.broker_folder
        folder.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            # Exchange bindings; kombu's default is ./control in the working directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    else:
        transport_options = {
            # Longer than the longest chunk: an unacknowledged chunk is redelivered
            # only after this, so it must never expire while a worker is still on it.
            "visibility_timeout": settings.visibility_timeout_seconds,
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            # A free worker process asks for the queues in the order of QUEUES
            # (one BRPOP over the three lists, in that order).
            "queue_order_strategy": "priority",
        }
    return {
        "broker_url": settings.broker_url,
        "broker_transport": transport,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": BULK_QUEUE,
        # Each queue bound with its own routing key, so no message can reach two.
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_routes": {DELIVER_WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE}},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # A chunk is acknowledged only once written, and requeued when the process
        # running it dies; each process holds one message at a time, so a process
        # that frees up takes the next message from the lane that needs it most.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Task events, so Flower shows workers and tasks without extra setup.
        "worker_send_task_events": True,
        # (Not task-sent events: one more message per chunk from the web, and Flower
        # shows tasks from the workers' events alone.)
        "worker_hijack_root_logger": False,
        "importer_settings": settings,
    }


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends (by task name: no task code is imported)."""
    from celery import Celery

    app = Celery("importer", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


@functools.cache
def redis_client(url: str, *, read_timeout: float | None = 2.0) -> redis.Redis:
    """This process's client of the Redis at ``url``: connections pooled, short
    timeouts, so a Redis that is down fails a request at once instead of hanging it.
    ``read_timeout=None`` for a connection that blocks on purpose (a subscription)."""
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=read_timeout)


class CeleryBroker:
    """The :class:`Broker` of a deployment: Redis, or the embedded folder of files."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self.settings = settings
        self._app = app

    @property
    def app(self) -> Celery:
        """The Celery app it sends with, built on first send (``depths`` needs none)."""
        if self._app is None:
            self._app = producer_app(self.settings)
        return self._app

    def send_chunks(self, messages: Sequence[ChunkMessage]) -> None:
        if not messages:
            return
        with self.app.producer_or_acquire() as producer:
            for message in messages:
                self.app.send_task(
                    IMPORT_CHUNK_TASK,
                    args=[message.chunk_id],
                    queue=message.lane.value,
                    producer=producer,
                    # What Flower and the task logs show instead of a bare row id.
                    argsrepr=(
                        f"chunk={message.chunk_id} batch={message.batch_id} "
                        f"org={message.org_id} lane={message.lane.value}"
                    ),
                )

    def send_deliveries(self, delivery_ids: Sequence[str]) -> None:
        if not delivery_ids:
            return
        with self.app.producer_or_acquire() as producer:
            for delivery_id in delivery_ids:
                self.app.send_task(
                    DELIVER_WEBHOOK_TASK,
                    args=[delivery_id],
                    queue=WEBHOOKS_QUEUE,
                    producer=producer,
                )

    def ping(self) -> None:
        if self.settings.redis_url:
            redis_client(self.settings.redis_url).ping()

    def lost_queues(self) -> bool:
        if not self.settings.redis_url:
            return False  # the folder keeps its messages across restarts
        marker = redis_client(self.settings.redis_url).set(
            BROKER_MARKER_KEY, uuid.uuid4().hex, nx=True
        )
        return bool(marker)

    def depths(self) -> dict[str, int | None]:
        if self.settings.redis_url:
            try:
                pipe = redis_client(self.settings.redis_url).pipeline()
                for name in QUEUES:
                    pipe.llen(name)
                return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
            except Exception:
                log.warning("could not read the queue depths from Redis", exc_info=True)
                return dict.fromkeys(QUEUES)
        # The embedded broker: one file per message, named "<...>.<queue>.msg".
        folder = Path(self.settings.broker_folder)
        files = [path.name for path in folder.glob("*.msg")] if folder.is_dir() else []
        return {name: sum(1 for file in files if file.endswith(f".{name}.msg")) for name in QUEUES}
