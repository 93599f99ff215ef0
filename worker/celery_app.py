"""Celery configuration, all in one place, and the factory that applies it.

The worker's own app is ``worker.app.celery``. The web front end makes a producer
with :func:`create_celery` and sends tasks by name, so it never imports task code.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Queue

from importer.config import Settings

IMPORTS_QUEUE = "imports"
IMPORT_CHUNK_TASK = "worker.tasks.import_chunk"
#: Webhook deliveries have a queue of their own, so a backlog of them (a slow or
#: unreachable receiver) never stands in front of the chunks.
WEBHOOKS_QUEUE = "webhooks"
DELIVER_WEBHOOK_TASK = "worker.tasks.deliver_webhook"
#: What ``importer worker`` consumes by default.
QUEUES = (IMPORTS_QUEUE, WEBHOOKS_QUEUE)


def celery_config(settings: Settings) -> dict[str, Any]:
    transport_options: dict[str, Any]
    if settings.is_embedded:
        # kombu's filesystem transport: one file per message in a local folder,
        # shared by the web and worker processes of one machine.
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
        }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": IMPORTS_QUEUE,
        # Each queue bound with its own routing key, so no message can reach both.
        "task_queues": [Queue(name, routing_key=name) for name in QUEUES],
        "task_routes": {
            IMPORT_CHUNK_TASK: {"queue": IMPORTS_QUEUE},
            DELIVER_WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE},
        },
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # A chunk is acknowledged only once written, and requeued when the process
        # running it dies; each process holds one message at a time.
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


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("importer", include=["worker.tasks"], set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def settings_of(app: Celery) -> Settings:
    settings: Settings = app.conf.importer_settings
    return settings
