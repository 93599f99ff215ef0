"""``celery -A worker.app``: the workers' Celery app, built from the environment the
first time ``worker.app.celery`` is read (not when this module is imported).

``importer worker`` builds its app itself (``worker.celery_app.create_celery``).
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery


@functools.cache
def _app() -> Celery:
    from worker.celery_app import create_celery

    return create_celery()


def __getattr__(name: str) -> Any:
    if name == "celery":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
