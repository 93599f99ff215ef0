"""Telling a waiting web request that its batch is done.

With Redis, the worker that finishes a batch publishes on a per-batch channel and
the request, subscribed before it dispatched the work, wakes at once. Without
Redis (the embedded deployment) the request re-reads the batch at short, growing
intervals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "importer:batch-done:"


class Notifier(Protocol):
    def publish_done(self, batch_id: str) -> None: ...

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool: ...


class RedisNotifier:
    def __init__(self, client: Any) -> None:
        self.client = client

    def publish_done(self, batch_id: str) -> None:
        try:
            self.client.publish(CHANNEL_PREFIX + batch_id, b"1")
        except Exception:  # a lost wake-up only costs the waiter its timeout
            log.warning("could not publish completion of batch %s", batch_id, exc_info=True)

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool:
        """Wait until ``is_done()`` or ``timeout`` seconds; returns ``is_done()``.

        The database is asked once after subscribing, then only about once a second
        (in case a notification was lost); a notification itself means done, since
        it is published after the commit that ended the batch.
        """
        deadline = time.monotonic() + timeout
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL_PREFIX + batch_id)
            # Subscribed first, checked second: a completion can't slip in between.
            if is_done():
                return True
            checked = time.monotonic()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return is_done()
                # None on timeout, and for the (ignored) subscription confirmation.
                if pubsub.get_message(timeout=min(remaining, 1.0)) is not None:
                    return True
                if time.monotonic() - checked >= 1.0:
                    if is_done():
                        return True
                    checked = time.monotonic()
        finally:
            pubsub.close()


class PollingNotifier:
    def __init__(self, first_interval: float = 0.01, max_interval: float = 0.25) -> None:
        self.first_interval = first_interval
        self.max_interval = max_interval

    def publish_done(self, batch_id: str) -> None:
        pass

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + timeout
        interval = self.first_interval
        while not is_done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, self.max_interval)
        return True


def make_notifier(redis_url: str | None) -> Notifier:
    if redis_url:
        import redis

        return RedisNotifier(redis.Redis.from_url(redis_url, socket_connect_timeout=2))
    return PollingNotifier()
