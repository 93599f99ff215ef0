"""Waiting slots: at most ``IMPORTER_SYNC_WAITERS`` requests of a web process wait for
a batch at once (a synchronous import, ``GET /v1/import/batches/{id}?wait=N``).

A waiting request holds one of the process's gunicorn threads for up to
``IMPORTER_SYNC_WAIT_SECONDS`` while using no CPU. Without a bound, enough waiting
callers take every thread, and health checks, metrics scrapes and every other org's
requests queue behind them. With the bound, the threads beyond it are never taken
by waiting: a request that finds every slot taken is answered at once with the
batch as it stands (``202`` + ``Location`` + ``Retry-After``), as if its wait had
ended, and the client follows the ``Location`` as it would after a long wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from importer import metrics

#: What a request answered without waiting suggests to its client, in seconds.
RETRY_AFTER_SECONDS = 1


class WaitingSlots:
    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(size) if size > 0 else None

    @contextmanager
    def claim(self) -> Iterator[bool]:
        """Yields whether the request may wait: a slot was free (it is held until the
        block ends), or not (the request answers at once)."""
        if self._free is None or not self._free.acquire(blocking=False):
            metrics.count_wait_declined()
            yield False
            return
        metrics.change_waiting(1)
        try:
            yield True
        finally:
            metrics.change_waiting(-1)
            self._free.release()
