"""The worker's Celery app, configured from the environment.

Run it with ``importer worker`` (or ``celery -A worker.app worker``).
"""

from worker.celery_app import create_celery
from worker.relay import MaintenanceStep

celery = create_celery()
celery.steps["consumer"].add(MaintenanceStep)
