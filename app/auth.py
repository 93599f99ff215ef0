"""Bearer-key authentication of every ``/v1`` request."""

from __future__ import annotations

import threading

from cachetools import TTLCache
from flask import g, request

from app.errors import Unauthorized
from app.extensions import db_session
from importer.models import Org
from importer.orgs import hash_key, org_for_key

#: Recently seen keys (by digest) and their org, for a few seconds: a query saved on
#: every request of a busy integration. A revoked key stops working within the TTL.
_recent_keys: TTLCache[str, Org] = TTLCache(maxsize=10_000, ttl=10)
_recent_keys_lock = threading.Lock()


def authenticate() -> None:
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise Unauthorized("Send your API key in the header 'Authorization: Bearer ak_...'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must read 'Bearer ak_...'.")
    digest = hash_key(token.strip())
    with _recent_keys_lock:
        org = _recent_keys.get(digest)
    if org is None:
        org = org_for_key(db_session(), token.strip())
        if org is None:
            raise Unauthorized("The API key is not valid (unknown or revoked).")
        db_session().expunge(org)  # kept beyond this request's session
        with _recent_keys_lock:
            _recent_keys[digest] = org
    g.org = org


def current_org() -> Org:
    org: Org = g.org
    return org
