"""The factory of the workers' Celery app: the shared configuration
(``importer.broker.celery_config``) plus the task code and the maintenance timer.

``importer worker`` calls it at its entry point; ``celery -A worker.app`` (Flower, a
bare Celery worker) gets the same app through ``worker.app``. The web and the operator
commands never import this: they send tasks by name through ``importer.broker``.
"""

from __future__ import annotations

from celery import Celery

from importer.broker import celery_config
from importer.config import Settings


def create_celery(settings: Settings | None = None) -> Celery:
    """A worker's app: ``settings`` (default: from the environment), the tasks of
    ``worker.tasks`` and the maintenance timer (``worker.relay``)."""
    import worker.signals  # noqa: F401  (the ids on each task's log lines, metrics files)
    from worker.relay import MaintenanceStep

    settings = settings or Settings.from_env()
    app = Celery("importer", include=["worker.tasks"], set_as_current=False)
    app.conf.update(celery_config(settings))
    app.steps["consumer"].add(MaintenanceStep)
    return app


def settings_of(app: Celery) -> Settings:
    settings: Settings = app.conf.importer_settings
    return settings
