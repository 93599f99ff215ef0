"""Orgs and their API keys. Keys are shown once and stored as SHA-256 digests.

An org has any number of keys, each with an optional name; a key is revoked, never
deleted, so listings keep its history. Rotating is: issue a new key, switch the
client to it, revoke the old one; both work in between.

Like ``importer.batches``, these functions only add and flush; the caller owns the
transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import ids
from importer.db import utcnow
from importer.models import ApiKey, Org

KEY_PREFIX = "ak_"
#: A revoked key stops working within this many seconds: how long a web process
#: trusts a key it has checked (``app.auth``).
REVOCATION_SECONDS = 10.0
#: How much of a new key listings show: "ak_" and 12 of its 48 hex digits (keys made
#: before names existed show 10 characters).
SHOWN_PREFIX_LENGTH = 15
MAX_KEY_NAME_LENGTH = 100
#: The shortest leading part of a key's prefix that can name it (``importer keys revoke``).
MIN_PREFIX_QUERY_LENGTH = len(KEY_PREFIX) + 4


def hash_key(api_key: str) -> str:
    # API keys carry 192 random bits, so a fast digest is enough: there is nothing
    # to brute-force that a slow hash would protect.
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def create_org(session: Session, name: str) -> tuple[Org, str]:
    """A new org and its first API key (the key in clear, to show once)."""
    org = Org(id=ids.new_id(ids.ORG), name=name)
    session.add(org)
    session.flush()
    return org, issue_key(session, org).api_key


@dataclass(frozen=True)
class IssuedKey:
    row: ApiKey
    #: The key in clear: shown once, stored nowhere.
    api_key: str


def key_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a key, or None."""
    if not name.strip():
        return "must not be empty"
    if len(name) > MAX_KEY_NAME_LENGTH:
        return f"must be at most {MAX_KEY_NAME_LENGTH} characters"
    if any(ord(character) < 32 or ord(character) == 127 for character in name):
        return "must not contain control characters"
    return None


def issue_key(session: Session, org: Org, name: str | None = None) -> IssuedKey:
    """A new key for ``org`` (``name`` checked by the caller with :func:`key_name_problem`)."""
    api_key = KEY_PREFIX + secrets.token_hex(24)
    row = ApiKey(
        org_id=org.id,
        key_hash=hash_key(api_key),
        key_prefix=api_key[:SHOWN_PREFIX_LENGTH],
        name=name.strip() if name else None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return IssuedKey(row, api_key)


@dataclass(frozen=True)
class KeyOwner:
    """Who a valid key belongs to: its org, and which of the org's keys it is."""

    org: Org
    key_id: int


def key_owner(session: Session, api_key: str) -> KeyOwner | None:
    """The org and key row of an API key, or None for an unknown or revoked key."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    found = session.execute(
        sa.select(Org, ApiKey.id)
        .join(ApiKey, ApiKey.org_id == Org.id)
        .where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    return None if found is None else KeyOwner(found[0], found[1])


def record_key_use(session: Session, key_id: int, now: dt.datetime, interval: dt.timedelta) -> bool:
    """Set the key's ``last_used_at`` to ``now`` unless it was set less than
    ``interval`` ago (by this process or another). True when it was written."""
    written: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(ApiKey)
        .where(
            ApiKey.id == key_id,
            sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= now - interval),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(written.rowcount)


def org_keys(session: Session, org_id: str) -> list[ApiKey]:
    """Every key of the org, revoked ones too, oldest first."""
    return list(
        session.scalars(
            sa.select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at, ApiKey.id)
        )
    )


def keys_named_by(session: Session, text: str) -> list[ApiKey]:
    """The keys ``text`` may mean: the key itself, or keys whose shown prefix starts
    with ``text`` (at least :data:`MIN_PREFIX_QUERY_LENGTH` characters of it)."""
    exact = session.scalars(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(text))).all()
    if exact:
        return list(exact)
    if len(text) < MIN_PREFIX_QUERY_LENGTH:
        return []
    return list(
        session.scalars(
            sa.select(ApiKey)
            .where(ApiKey.key_prefix.startswith(text, autoescape=True))
            .order_by(ApiKey.created_at, ApiKey.id)
        )
    )


def revoke_key(session: Session, key: ApiKey) -> bool:
    """Revoke ``key``; False when it already was (its revocation time is kept)."""
    if key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    session.flush()
    return True


def active_key_count(session: Session, org_id: str) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ApiKey)
            .where(ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None))
        )
        or 0
    )


def orgs_named_by(session: Session, text: str) -> list[Org]:
    """The org whose id is ``text``, else every org named ``text``."""
    by_id = session.get(Org, text)
    if by_id is not None:
        return [by_id]
    return list(session.scalars(sa.select(Org).where(Org.name == text).order_by(Org.created_at)))
