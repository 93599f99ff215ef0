"""``Idempotency-Key`` for the import call.

Within the retention period (24 h by default) a repeat with the same key and the
same request gets the original status and body without importing again. The key
row is committed *before* the batch is validated and accepted, so a concurrent
repeat sees it: while the first request is still being accepted the repeat gets
``409 request_in_progress``; once it is accepted the repeat gets the batch as it
stands. The batch id is written in the same transaction that accepts the batch,
so a key can never point at a batch that does not exist, nor a batch lose its key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import IdempotencyKeyReused, InvalidIdempotencyKey, RequestInProgress
from importer.db import Database, utcnow
from importer.models import IdempotencyKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
#: A key row left "being accepted" this long belongs to a request that died.
STALE_AFTER = dt.timedelta(minutes=5)


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or not key.isascii():
        raise InvalidIdempotencyKey(
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters."
        )
    return key


def fingerprint(*parts: bytes | bytearray | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Replay:
    """What a repeat of an earlier request gets instead of a new import."""

    batch_id: str
    status_code: int | None
    body: bytes | None


def begin(db: Database, org_id: str, key: str, request_hash: str, ttl: int) -> int | Replay:
    """Reserve ``key`` for this request (returns the key row's id), or say what the
    earlier request with this key answered (returns a :class:`Replay`)."""
    now = utcnow()
    for _attempt in range(3):
        try:
            with db.session() as session:
                row = IdempotencyKey(
                    org_id=org_id,
                    key=key,
                    request_hash=request_hash,
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=ttl),
                )
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            pass
        with db.session() as session:
            existing = session.scalars(
                sa.select(IdempotencyKey).where(
                    IdempotencyKey.org_id == org_id, IdempotencyKey.key == key
                )
            ).one_or_none()
            if existing is None:
                continue  # released in the meantime: try again
            stale = existing.batch_id is None and existing.created_at < now - STALE_AFTER
            if existing.expires_at <= now or stale:
                session.delete(existing)
                continue
            if existing.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    f"{HEADER} {key!r} was already used with a different request; "
                    "use a new key for a new request."
                )
            if existing.batch_id is None:
                raise RequestInProgress(
                    f"A request with {HEADER} {key!r} is still being accepted; retry in a moment.",
                    headers={"Retry-After": "1"},
                )
            return Replay(existing.batch_id, existing.status_code, existing.response_body)
    raise RequestInProgress(f"{HEADER} {key!r} is contended; retry in a moment.")


def attach_batch(session: Session, key_id: int, batch_id: str) -> None:
    """Tie the key to its batch, in the transaction that accepts the batch."""
    session.execute(
        sa.update(IdempotencyKey).where(IdempotencyKey.id == key_id).values(batch_id=batch_id)
    )


def release(db: Database, key_id: int) -> None:
    """Forget a key whose request failed before anything was accepted, so it can be retried."""
    try:
        with db.session() as session:
            session.execute(
                sa.delete(IdempotencyKey).where(
                    IdempotencyKey.id == key_id, IdempotencyKey.batch_id.is_(None)
                )
            )
    except Exception:
        log.warning("could not release idempotency key %s", key_id, exc_info=True)


def record_response(db: Database, key_id: int, status_code: int, body: bytes) -> None:
    try:
        with db.session() as session:
            session.execute(
                sa.update(IdempotencyKey)
                .where(IdempotencyKey.id == key_id)
                .values(status_code=status_code, response_body=body)
            )
    except Exception:
        # The batch is accepted and tied to the key: a repeat still gets its
        # current state, just not the byte-identical first answer.
        log.warning("could not store the response for idempotency key %s", key_id, exc_info=True)
