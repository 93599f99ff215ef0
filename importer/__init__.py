"""The import service's domain: catalog, validation, storage and the batch lifecycle.

Shared by the web front end (``app``) and the Celery workers (``worker``).
"""
