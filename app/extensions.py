"""What a Flask app holds besides its views: settings, database, outbox, notifier."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g
from sqlalchemy.orm import Session

from app.ratelimits import RateLimits
from app.waiting import WaitingSlots
from importer.broker import CeleryBroker
from importer.config import Settings
from importer.db import Database
from importer.notify import Notifier, make_notifier
from importer.outbox import Outbox


class BrokerCheck:
    """Whether the broker answers, asked at most once per ``ttl`` seconds.

    Used before accepting a batch: with the broker down the service answers 503 and
    accepts nothing (work accepted while it was up and not yet queued is sent by
    the relay when it is back).
    """

    def __init__(self, ping: Callable[[], Any] | None, ttl: float = 1.0) -> None:
        self.ping = ping
        self.ttl = ttl
        self._checked_at = 0.0
        self._error: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self.ping is None:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._checked_at >= self.ttl:
                try:
                    self.ping()
                    self._error = None
                except Exception as failure:  # any failure to reach it
                    self._error = failure
                self._checked_at = now
            error = self._error
        if error is not None:
            raise error


@dataclass
class Services:
    settings: Settings
    db: Database
    #: Where every hand-over to the broker goes (see ``importer.outbox``).
    outbox: Outbox
    notifier: Notifier
    check_broker: Callable[[], None]
    #: Requests of this process that may wait for a batch at once (app.waiting).
    waiting: WaitingSlots
    #: Per-org rate limits (None: off).
    rate_limits: RateLimits | None = None


def build_services(settings: Settings) -> Services:
    db = Database.from_settings(settings)
    broker = CeleryBroker(settings)
    return Services(
        settings=settings,
        db=db,
        outbox=Outbox(settings, db, broker),
        notifier=make_notifier(settings.redis_url),
        check_broker=BrokerCheck(broker.ping if settings.redis_url else None),
        waiting=WaitingSlots(settings.waiting_slots),
        rate_limits=RateLimits.from_settings(settings),
    )


def services() -> Services:
    result: Services = current_app.extensions["importer"]
    return result


def db_session() -> Session:
    """The request's session; the view commits, teardown closes (rolling back the rest)."""
    if "db_session" not in g:
        g.db_session = services().db.new_session()
    session: Session = g.db_session
    return session


def close_db_session(_error: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
