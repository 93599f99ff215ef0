"""The workers' Celery app: the shared configuration (``importer.broker.celery_config``)
plus the task code and the maintenance timer.

The web and the operator commands never import this: they send tasks by name through
``importer.broker``.
"""

from __future__ import annotations

from celery import Celery

from importer.broker import celery_config
from importer.config import Settings


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("importer", include=["worker.tasks"], set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def settings_of(app: Celery) -> Settings:
    settings: Settings = app.conf.importer_settings
    return settings
