"""Telling a waiting web request that its batch is done.

With Redis, the worker that finishes a batch publishes on a per-batch channel. Each
web process holds ONE subscription to all of those channels (a listener thread),
and wakes the requests waiting for that batch: no connection or subscription per
request. Without Redis (the embedded deployment) a request re-reads the batch at
short, growing intervals.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "importer:batch-done:"


class Watch(Protocol):
    def wait(self, timeout: float, is_done: Callable[[], bool], look_first: bool = True) -> bool:
        """Until done or ``timeout`` seconds; returns whether the batch is done.
        ``look_first=False`` when the watch began before the batch's work was sent, so
        no completion can have been missed and the first database look is saved."""
        ...


class Notifier(Protocol):
    def publish_done(self, batch_id: str) -> None: ...

    def watch(self, batch_id: str) -> AbstractContextManager[Watch]: ...

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool: ...


class RedisNotifier:
    def __init__(self, client: Any, recheck_every: float = 1.0) -> None:
        self.client = client
        #: How often a waiter also asks the database (in case a message was lost).
        self.recheck_every = recheck_every
        self._waiters: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._listener: threading.Thread | None = None
        self._pid: int | None = None

    def publish_done(self, batch_id: str) -> None:
        try:
            self.client.publish(CHANNEL_PREFIX + batch_id, b"1")
        except Exception:  # a lost wake-up only costs the waiter a re-check
            log.warning("could not publish completion of batch %s", batch_id, exc_info=True)

    def _ensure_listener(self) -> None:
        with self._lock:
            alive = self._listener is not None and self._listener.is_alive()
            if alive and self._pid == os.getpid():
                return
            # First use in this process (threads do not survive a fork).
            self._pid = os.getpid()
            self._subscribed.clear()
            self._listener = threading.Thread(
                target=self._listen, name="batch-done-listener", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        while True:
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(CHANNEL_PREFIX + "*")
                pubsub.get_message(timeout=5)  # the subscription's confirmation
                self._subscribed.set()
                for message in pubsub.listen():
                    if message["type"] != "pmessage":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    with self._lock:
                        waiting = list(self._waiters.get(channel[len(CHANNEL_PREFIX) :], ()))
                    for event in waiting:
                        event.set()
            except Exception:
                # Redis went away: waiters fall back to re-checking the database
                # until the subscription is back.
                self._subscribed.clear()
                log.warning("lost the batch-done subscription; reconnecting", exc_info=True)
                time.sleep(1)

    @contextmanager
    def watch(self, batch_id: str) -> Iterator[Watch]:
        """Register for the batch's completion message (the subscription is live when
        this returns)."""
        self._ensure_listener()
        woken = threading.Event()
        with self._lock:
            self._waiters.setdefault(batch_id, set()).add(woken)
        try:
            self._subscribed.wait(2.0)
            yield _RedisWatch(woken, self.recheck_every)
        finally:
            with self._lock:
                waiting = self._waiters.get(batch_id)
                if waiting is not None:
                    waiting.discard(woken)
                    if not waiting:
                        del self._waiters[batch_id]

    def wait_done(self, batch_id: str, timeout: float, is_done: Callable[[], bool]) -> bool:
        """Wait until ``is_done()`` or ``timeout`` seconds; returns ``is_done()``."""
        with self.watch(batch_id) as watch:
            return watch.wait(timeout, is_done)


class _RedisWatch:
    def __init__(self, woken: threading.Event, recheck_every: float) -> None:
        self.woken = woken
        self.recheck_every = recheck_every

    def wait(self, timeout: float, is_done: Callable[[], bool], look_first: bool = True) -> bool:
        # The database is asked first (a completion may have come before the watch),
        # then only every ``recheck_every`` seconds, in case a message was lost; a
        # message means done, since it is published after the commit that ended it.
        deadline = time.monotonic() + timeout
        if look_first and is_done():
            return True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return is_done()
            if self.woken.wait(min(remaining, self.recheck_every)):
                return True
            if is_done():
                return True


class PollingNotifier:
    def __init__(self, first_interval: float = 0.01, max_interval: float = 0.25) -> None:
        self.first_interval = first_interval
        self.max_interval = max_interval

    def publish_done(self, batch_id: str) -> None:
        pass

    @contextmanager
    def watch(self, batch_id: str) -> Iterator[Watch]:
        yield _PollingWatch(self, batch_id)

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
        from importer.broker import redis_client

        return RedisNotifier(redis_client(redis_url, read_timeout=None))
    return PollingNotifier()


class _PollingWatch:
    def __init__(self, notifier: PollingNotifier, batch_id: str) -> None:
        self.notifier, self.batch_id = notifier, batch_id

    def wait(self, timeout: float, is_done: Callable[[], bool], look_first: bool = True) -> bool:
        return self.notifier.wait_done(self.batch_id, timeout, is_done)
