"""Import batches: ``/v1/import/batches`` and each batch's results, errors and warnings."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import request
from sqlalchemy.orm import Session

from app.api import api
from app.auth import current_org
from app.errors import ApiError, NotFound
from app.extensions import db_session, services
from app.pagination import (
    InvalidParameter,
    Key,
    PageRequest,
    int_arg,
    paged,
    query_page,
    scope_digest,
)
from importer import listing, logs, outcomes
from importer.models import BatchStatus, ImportBatch
from importer.notify import Watch


class DetailsExpired(ApiError):
    status = 410
    code = "batch_details_expired"


def _batch_or_404(batch_id: str) -> ImportBatch:
    batch = (
        db_session()
        .scalars(
            sa.select(ImportBatch).where(
                ImportBatch.id == batch_id, ImportBatch.org_id == current_org().id
            )
        )
        .one_or_none()
    )
    if batch is None:
        raise NotFound(f"No import batch {batch_id!r} in this org.", code="batch_not_found")
    logs.bind(batch_id=batch.id)
    return batch


@api.get("/import/batches")
def list_batches() -> dict[str, Any]:
    org_id = current_org().id
    conditions = [ImportBatch.org_id == org_id]
    status = request.args.get("status")
    if status:
        try:
            conditions.append(ImportBatch.status == BatchStatus(status))
        except ValueError:
            raise InvalidParameter(
                f"status must be one of {', '.join(s.value for s in BatchStatus)}; got {status!r}."
            ) from None
    slug = request.args.get("slug")
    if slug:
        conditions.append(ImportBatch.slug == slug)
    session = db_session()
    query = sa.select(ImportBatch).where(*conditions)
    return query_page(
        session,
        query,
        [ImportBatch.seq],
        descending=True,
        entities=True,
        scope=scope_digest("batches", org_id, status, slug),
        kinds=("int",),
        item=outcomes.batch_summary,
        total=lambda: listing.bounded_count(session, query),
    )


def wait_until_done(
    session: Session, batch: ImportBatch, seconds: float, watch: Watch | None = None
) -> None:
    """Block until the workers finish ``batch`` or ``seconds`` pass; refresh it either way.

    ``watch``: one the caller opened before it sent the batch's work, so no
    completion can have been missed and the database needs no first look.
    """
    if seconds <= 0 or BatchStatus(batch.status).is_done:
        return
    svc = services()

    def is_done() -> bool:
        # A short session per look, so each look sees the latest commit (SQLite
        # would keep showing one snapshot inside a transaction).
        with svc.db.session() as look:
            status = look.scalar(sa.select(ImportBatch.status).where(ImportBatch.id == batch.id))
        return status is not None and BatchStatus(status).is_done

    if watch is None:
        svc.notifier.wait_done(batch.id, seconds, is_done)
    else:
        watch.wait(seconds, is_done, look_first=False)
    session.commit()  # ends the request's read transaction, so the refresh sees the workers'
    session.refresh(batch)


@api.get("/import/batches/<batch_id>")
def get_batch(batch_id: str) -> dict[str, Any]:
    """The batch; ``?wait=N`` (seconds, at most the synchronous wait) long-polls until
    it is done, so a client need not poll in a tight loop."""
    batch = _batch_or_404(batch_id)
    settings = services().settings
    wait_until_done(db_session(), batch, int_arg("wait", 0, 0, int(settings.sync_wait_seconds)))
    return outcomes.batch_body(db_session(), batch, settings.inline_items)


def _outcome_page(batch_id: str, kind: outcomes.Kind) -> dict[str, Any]:
    batch = _batch_or_404(batch_id)
    if batch.details_purged_at is not None:
        raise DetailsExpired(
            f"The {kind} of batch {batch.id} were deleted after "
            f"{services().settings.batch_detail_retention_days} days "
            f"(IMPORTER_BATCH_DETAIL_RETENTION_DAYS); its summary is still at "
            f"GET /v1/import/batches/{batch.id}."
        )
    session = db_session()

    def fetch(page: PageRequest, n: int) -> list[tuple[Key, Any]]:
        # Chunks are skipped by their counts, so any position costs what the first does:
        # the cursor carries only the position.
        return [((), item) for item in outcomes.page(session, batch.id, kind, page.offset, n)]

    return paged(
        scope_digest(kind, batch.id),
        (),
        fetch,
        lambda: (outcomes.total(batch, kind), False),
    )


@api.get("/import/batches/<batch_id>/results")
def batch_results(batch_id: str) -> dict[str, Any]:
    return _outcome_page(batch_id, "results")


@api.get("/import/batches/<batch_id>/errors")
def batch_errors(batch_id: str) -> dict[str, Any]:
    return _outcome_page(batch_id, "errors")


@api.get("/import/batches/<batch_id>/warnings")
def batch_warnings(batch_id: str) -> dict[str, Any]:
    return _outcome_page(batch_id, "warnings")
