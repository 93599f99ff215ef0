"""Per-org rate limits of the ``/v1`` API, kept in Redis so that every web process
counts against the same budget (the ``limits`` library and its Redis storage).

* ``IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND``: requests of any kind, per org. A
  **moving window** (each request's timestamp in a Redis list, trimmed to the
  limit): exact, and cheap at this size (at most that many entries per org).
* ``IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE``: records sent to the import call, per
  org, counted once the body is parsed and before anything is accepted. A **sliding
  window counter** (this minute's and last minute's counts, the latter weighted by
  how much of it still overlaps the last 60 s): two integers per org whatever the
  budget (a moving window would keep one list entry per record), no burst of twice
  the budget across a minute boundary (as a fixed window allows), and the check and
  the count are one Lua script, so a refused batch consumes nothing.

Over a limit the answer is ``429 rate_limited`` with ``Retry-After``: the seconds
until the window has room again (for records: room for *this* batch). A batch
whose record count alone is over the per-minute budget could never pass: it is
refused with ``413 batch_over_rate_limit`` and no ``Retry-After`` (split it).

Both are off at 0 (the default), and always off in the embedded deployment (no
``REDIS_URL``). If Redis cannot be asked, the request goes through (logged): the
limits protect the service, they are not part of an import's correctness.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from app.errors import BatchOverRateLimit, RateLimited
from importer.config import Settings

log = logging.getLogger(__name__)

KEY_PREFIX = "importer:ratelimit"


def records_retry_after(
    *,
    limit: int,
    cost: int,
    window: float,
    previous_count: int,
    previous_expires_in: float,
    current_count: int,
    current_expires_in: float,
) -> int:
    """Whole seconds until a sliding window counter has room for ``cost`` more.

    The storage's view: the current window's counter lives ``2 * window`` seconds from
    its first hit (so ``current_expires_in - window`` is what is left of the current
    window); the previous window's count weighs ``previous_expires_in / window`` of
    itself and goes to 0 as the current window ends.
    """
    left_in_current = max(current_expires_in - window, 0.0)
    room_now = limit - current_count - cost
    if room_now >= 0:
        # Fits once the previous window's weight has decayed enough.
        if previous_count == 0:
            wait = 0.0
        else:
            wait = max(previous_expires_in - room_now * window / previous_count, 0.0)
    else:
        # Not before this window ends; then this window's count is the previous one,
        # and decays until it leaves room for the batch.
        decay = window - (limit - cost) * window / current_count if current_count else 0.0
        wait = left_in_current + max(decay, 0.0)
    return max(1, math.ceil(wait))


class RateLimits:
    """The two per-org limits over one ``limits`` storage (Redis)."""

    def __init__(self, storage: Any, requests_per_second: int, records_per_minute: int) -> None:
        self.storage = storage
        self.requests = RateLimitItemPerSecond(requests_per_second) if requests_per_second else None
        self.records = RateLimitItemPerMinute(records_per_minute) if records_per_minute else None
        self._moving = MovingWindowRateLimiter(storage)
        self._sliding = SlidingWindowCounterRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits | None:
        """The limits the settings ask for; None when both are off or there is no Redis."""
        per_second = settings.rate_limit_requests_per_second
        per_minute = settings.rate_limit_records_per_minute
        if settings.redis_url is None or not (per_second or per_minute):
            return None
        storage = RedisStorage(
            settings.redis_url,
            key_prefix=KEY_PREFIX,
            wrap_exceptions=True,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        return cls(storage, per_second, per_minute)

    def check_request(self, org_id: str) -> None:
        """Count one request of the org; :class:`RateLimited` when over the limit."""
        item = self.requests
        if item is None:
            return
        try:
            if self._moving.hit(item, "requests", org_id):
                return
            reset_at = self._moving.get_window_stats(item, "requests", org_id).reset_time
        except Exception:
            log.warning("could not check the request rate limit; letting it through", exc_info=True)
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(
            f"Too many requests: this org may make {item.amount} per second "
            "(IMPORTER_RATE_LIMIT_REQUESTS_PER_SECOND). "
            f"Retry in {retry_after} s; nothing was done.",
            retry_after,
        )

    def check_records(self, org_id: str, count: int) -> None:
        """Count ``count`` records of the org's next batch, or refuse the whole batch
        (counting nothing): 429 when the budget has no room now, 413 when it never will."""
        item = self.records
        if item is None or count <= 0:
            return
        if count > item.amount:
            raise BatchOverRateLimit(
                f"This batch has {count} records, more than this org may import per minute "
                f"({item.amount}, IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE): it can never be "
                f"accepted. Send it in batches of at most {item.amount} records; nothing "
                "was accepted."
            )
        try:
            if self._sliding.hit(item, "records", org_id, cost=count):
                return
            window = self.storage.get_sliding_window(
                item.key_for("records", org_id), item.get_expiry()
            )
        except Exception:
            log.warning("could not check the records rate limit; letting it through", exc_info=True)
            return
        previous_count, previous_expires_in, current_count, current_expires_in = window
        retry_after = records_retry_after(
            limit=item.amount,
            cost=count,
            window=item.get_expiry(),
            previous_count=previous_count,
            previous_expires_in=previous_expires_in,
            current_count=current_count,
            current_expires_in=current_expires_in,
        )
        raise RateLimited(
            f"Too many records: this org may import {item.amount} per minute "
            "(IMPORTER_RATE_LIMIT_RECORDS_PER_MINUTE), and this batch's "
            f"{count} do not fit in what is left. Retry in {retry_after} s; nothing was "
            "accepted.",
            retry_after,
        )
