"""The worker's Celery app, configured from the environment.

Run it with ``importer worker`` (or ``celery -A worker.app worker``).
"""

import worker.signals  # noqa: F401  (the ids on each task's log lines, metrics book-keeping)
from worker.celery_app import create_celery
from worker.relay import MaintenanceStep

celery = create_celery()
celery.steps["consumer"].add(MaintenanceStep)
