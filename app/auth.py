"""Bearer-key authentication of every ``/v1`` request.

Each web process remembers a key it has checked for ``REVOCATION_SECONDS`` (10 s): a
query saved on every request of a busy integration. So a revoked key stops working
within that time, in every process. A key's ``last_used_at`` is written at most once per
:data:`LAST_USED_INTERVAL` (per process, and the UPDATE's condition makes it so across
processes), in a short transaction of its own: not a write per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from cachetools import TTLCache
from flask import g, request

from app.errors import Unauthorized
from app.extensions import db_session, services
from importer.db import utcnow
from importer.models import Org
from importer.orgs import REVOCATION_SECONDS, KeyOwner, hash_key, key_owner, record_key_use

log = logging.getLogger(__name__)

#: A key's last_used_at is written at most this often.
LAST_USED_INTERVAL = dt.timedelta(minutes=1)


def _monotonic() -> float:
    return time.monotonic()


# Keyed by the key's digest: unique to the key, whatever database the process serves.
_recent_keys: TTLCache[str, KeyOwner] = TTLCache(
    maxsize=10_000, ttl=REVOCATION_SECONDS, timer=lambda: _monotonic()
)
_recent_keys_lock = threading.Lock()
#: When this process last wrote each key's last_used_at (a key a process has used is
#: a credential of one of the deployment's orgs: a few entries).
_last_use_written: dict[str, dt.datetime] = {}
_last_use_lock = threading.Lock()


def authenticate() -> None:
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise Unauthorized("Send your API key in the header 'Authorization: Bearer ak_...'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must read 'Bearer ak_...'.")
    digest = hash_key(token.strip())
    with _recent_keys_lock:
        owner = _recent_keys.get(digest)
    if owner is None:
        owner = key_owner(db_session(), token.strip())
        if owner is None:
            raise Unauthorized("The API key is not valid (unknown or revoked).")
        db_session().expunge(owner.org)  # kept beyond this request's session
        with _recent_keys_lock:
            _recent_keys[digest] = owner
    g.org = owner.org
    _note_use(digest, owner.key_id)


def _note_use(digest: str, key_id: int) -> None:
    """Write the key's last_used_at if this process has not for a minute."""
    now = utcnow()
    with _last_use_lock:
        written = _last_use_written.get(digest)
        if written is not None and now - written < LAST_USED_INTERVAL:
            return
        _last_use_written[digest] = now
    try:
        with services().db.session() as session:
            record_key_use(session, key_id, now, LAST_USED_INTERVAL)
    except Exception:  # bookkeeping: never the reason a request fails
        log.warning("could not record the use of API key %s", key_id, exc_info=True)


def current_org() -> Org:
    org: Org = g.org
    return org
