"""Celery signal handlers: the service's logging (no handler of Celery's own), the ids
on each log line of a task, and the metrics book-keeping of pool processes.

* ``task_prerun``/``task_postrun``: a task's lines carry its ``task_id`` (and, once
  :func:`worker.tasks.run_chunk` knows it, the chunk's ``batch_id``); both are unset
  when the task ends, so nothing leaks into the next task of the process.
* ``worker_process_shutdown``: a pool process that exits is marked dead in the
  metrics folder (see :func:`importer.metrics.mark_process_dead`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import signals

from importer import logs, metrics
from importer.config import Settings
from importer.logs import configure_logging


@signals.setup_logging.connect
def _keep_the_service_logging(**_: Any) -> None:
    """Celery adds no handler or format of its own (a receiver of this signal tells it
    so): its loggers propagate to the root handler ``importer worker`` set up, in the
    service's format. Its pool's ("multiprocessing") logger too, which it would
    otherwise give a handler of its own."""
    from celery.utils.log import get_multiprocessing_logger

    if not logging.getLogger().handlers:  # started as `celery -A worker.app worker`
        configure_logging(Settings.from_env())
    pool_logger = get_multiprocessing_logger()
    if pool_logger is not None:
        pool_logger.handlers.clear()
        pool_logger.propagate = True
        pool_logger.setLevel(logging.ERROR)


@signals.task_prerun.connect
def _task_started(task_id: str | None = None, **_: Any) -> None:
    logs.clear()
    logs.bind(task_id=task_id)


@signals.task_postrun.connect
def _task_ended(**_: Any) -> None:
    logs.clear()


@signals.worker_process_shutdown.connect
def _pool_process_exits(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())
