"""The Celery side: chunk tasks, the outbox relay and the sweep of stuck chunks."""
