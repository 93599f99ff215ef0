"""What the lists need from the database, besides their rows: a ``total`` that never
counts a large table, and the write horizon an object list stops at.

Totals:

* an org's objects of one base object: exact, from ``object_counts``, which
  :func:`count_created` maintains in the transaction that writes the rows (objects
  are only ever added, so the count only grows);
* anything else (a filtered list, batches, webhooks, deliveries): :func:`bounded_count`,
  exact up to :data:`COUNT_BOUND`, beyond which the list says its total is a lower
  bound. That is one index range of at most ``COUNT_BOUND + 1`` entries.

The write horizon (:func:`write_horizon`): the chunks of one org are written in
parallel, each stamping its rows with the time its write began, and they commit in
any order. A reader walking an object list by ``(updated_at, id)`` that went past a
row committed by a later write would never see the rows of an earlier write that
commits after it. So an object list shows only rows stamped before every write still
in progress for the org began: a chunk is claimed (``status = processing``,
``started_at``) and that is committed before its write takes its time stamp, so the
horizon is ``min(started_at)`` of the org's processing chunks, or the time just
before the read when none is running. What lies beyond is shown once the write ends.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from importer.db import utcnow
from importer.models import ChunkStatus, ImportChunk, ObjectCount

#: A total above this is given as this, flagged as a lower bound.
COUNT_BOUND = 10_000


def bounded_count(
    session: Session, query: sa.Select[Any], bound: int | None = None
) -> tuple[int, bool]:
    """``(count, is_lower_bound)`` of the rows ``query`` selects, counting at most
    ``bound + 1`` of them (``bound``: :data:`COUNT_BOUND`)."""
    bound = COUNT_BOUND if bound is None else bound
    limited = (
        query.with_only_columns(sa.literal(1), maintain_column_froms=True)
        .order_by(None)
        .limit(bound + 1)
        .subquery()
    )
    found = session.scalar(sa.select(sa.func.count()).select_from(limited)) or 0
    return min(found, bound), found > bound


def object_count(session: Session, org_id: str, base_object: str) -> int:
    """How many ``base_object`` objects the org has (committed ones)."""
    found = session.scalar(
        sa.select(ObjectCount.count).where(
            ObjectCount.org_id == org_id, ObjectCount.base_object == base_object
        )
    )
    return int(found or 0)


@functools.lru_cache(maxsize=4)
def _add_statement(dialect: str) -> sa.Insert:
    table = cast(sa.Table, ObjectCount.__table__)
    insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return insert.on_conflict_do_update(
        index_elements=["org_id", "base_object"],
        set_={"count": table.c["count"] + insert.excluded["count"]},
    )


def count_created(session: Session, org_id: str, base_object: str, created: int) -> None:
    """Add ``created`` new objects to the org's count, in the caller's transaction (the
    one that wrote them, so they are counted exactly once, and only if it commits).

    The row stays locked until that commit: call this after the rows are written,
    so chunks of one org queue on it only for the end of their transactions."""
    if created <= 0:
        return
    dialect = session.get_bind().dialect.name
    session.execute(
        _add_statement(dialect),
        {"org_id": org_id, "base_object": base_object, "count": created},
    )


def write_horizon(session: Session, org_id: str) -> dt.datetime:
    """Rows of the org's objects stamped at or after this may still be joined by rows
    of an earlier write that has not committed: an object list stops before it."""
    now = utcnow()
    oldest = session.scalar(
        sa.select(sa.func.min(ImportChunk.started_at)).where(
            ImportChunk.org_id == org_id,
            # The live-chunk index's own condition, so both databases use that index.
            ImportChunk.status.in_([ChunkStatus.PENDING, ChunkStatus.PROCESSING]),
            ImportChunk.status == ChunkStatus.PROCESSING,
        )
    )
    if oldest is None:
        return now
    if oldest.tzinfo is None:  # SQLite's MIN() comes back as a naive value
        oldest = oldest.replace(tzinfo=dt.UTC)
    return min(oldest, now)
