"""Orgs and their API keys. Keys are shown once and stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from importer import ids
from importer.models import ApiKey, Org

KEY_PREFIX = "ak_"


def hash_key(api_key: str) -> str:
    # API keys carry 192 random bits, so a fast digest is enough: there is nothing
    # to brute-force that a slow hash would protect.
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def create_org(session: Session, name: str) -> tuple[Org, str]:
    """A new org and its first API key (the key in clear, to show once)."""
    org = Org(id=ids.new_id(ids.ORG), name=name)
    session.add(org)
    session.flush()
    return org, issue_key(session, org)


def issue_key(session: Session, org: Org) -> str:
    api_key = KEY_PREFIX + secrets.token_hex(24)
    session.add(ApiKey(org_id=org.id, key_hash=hash_key(api_key), key_prefix=api_key[:10]))
    session.flush()
    return api_key


def org_for_key(session: Session, api_key: str) -> Org | None:
    """The org an API key belongs to, or None for an unknown or revoked key."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
        return None
    return session.scalars(
        sa.select(Org)
        .join(ApiKey, ApiKey.org_id == Org.id)
        .where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
    ).one_or_none()
