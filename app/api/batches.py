"""Import batches: ``/v1/import/batches`` and each batch's results, errors and warnings.

A batch's results, errors and warnings are pages of JSON by default; with
``Accept: application/x-ndjson`` or ``Accept: text/csv`` the whole list comes in one
streamed response (:func:`importer.outcomes.stream`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from app.api import api
from app.auth import current_org
from app.errors import BatchNotDone, BatchNotFound, DetailsExpired, InvalidParameter
from app.extensions import db_session, services
from app.pagination import (
    Key,
    PageRequest,
    int_arg,
    paged,
    query_page,
    scope_digest,
)
from app.waiting import RETRY_AFTER_SECONDS
from importer import listing, logs, outcomes
from importer.models import BatchStatus, ImportBatch
from importer.notify import Watch


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
        raise BatchNotFound(f"No import batch {batch_id!r} in this org.")
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
def get_batch(batch_id: str) -> Response:
    """The batch; ``?wait=N`` (seconds, at most the synchronous wait) long-polls until
    it is done, so a client need not poll in a tight loop. Without a free waiting slot
    (app.waiting) it answers at once, with ``Retry-After`` while the batch runs."""
    batch = _batch_or_404(batch_id)
    svc = services()
    wait = int_arg("wait", 0, 0, int(svc.settings.sync_wait_seconds))
    may_wait = True
    if wait > 0 and not BatchStatus(batch.status).is_done:
        with svc.waiting.claim() as may_wait:
            if may_wait:
                wait_until_done(db_session(), batch, wait)
    response = jsonify(outcomes.batch_body(db_session(), batch, svc.settings.inline_items))
    if not may_wait and not BatchStatus(batch.status).is_done:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


JSON = "application/json"
#: What ``Accept`` may ask for; JSON first, so it wins a tie (``*/*``, no header).
_OUTCOME_TYPES = (JSON, outcomes.NDJSON, outcomes.CSV)


def _outcome_list(batch_id: str, kind: outcomes.Kind) -> Response | dict[str, Any]:
    batch = _batch_or_404(batch_id)
    if batch.details_purged_at is not None:
        raise DetailsExpired(
            f"The {kind} of batch {batch.id} were deleted after "
            f"{services().settings.batch_detail_retention_days} days "
            f"(IMPORTER_BATCH_DETAIL_RETENTION_DAYS); its summary is still at "
            f"GET /v1/import/batches/{batch.id}."
        )
    media = request.accept_mimetypes.best_match(_OUTCOME_TYPES, default=JSON)
    if media == JSON:
        session = db_session()

        def fetch(page: PageRequest, n: int) -> list[tuple[Key, Any]]:
            # Chunks are skipped by their counts, so any position costs what the first
            # does: the cursor carries only the position.
            return [((), item) for item in outcomes.page(session, batch.id, kind, page.offset, n)]

        return paged(
            scope_digest(kind, batch.id),
            (),
            fetch,
            lambda: (outcomes.total(batch, kind), False),
            total_first=True,
        )
    if not BatchStatus(batch.status).is_done:
        raise BatchNotDone(
            f"Batch {batch.id} is still {BatchStatus(batch.status).value}: its {kind} come "
            f"as one {media} stream once it is done. Wait for it with GET "
            f"/v1/import/batches/{batch.id}?wait=N (or read the JSON pages so far).",
            headers={"Retry-After": "1"},
        )
    chunk_ids = outcomes.chunks_holding(db_session(), batch.id, kind)
    fmt: outcomes.StreamFormat = "csv" if media == outcomes.CSV else "ndjson"
    body = outcomes.stream(services().db.session, chunk_ids, kind, fmt)
    response = Response(body, mimetype=media)
    response.headers["X-Total-Count"] = str(outcomes.total(batch, kind))
    if fmt == "csv":
        response.headers["Content-Disposition"] = f'attachment; filename="{batch.id}-{kind}.csv"'
    return response


def _vary_on_accept(response: Response | dict[str, Any]) -> Response:
    """The three lists answer by ``Accept``: a cache must keep them apart."""
    if isinstance(response, dict):
        response = jsonify(response)
    response.vary.add("Accept")
    return response


@api.get("/import/batches/<batch_id>/results")
def batch_results(batch_id: str) -> Response:
    return _vary_on_accept(_outcome_list(batch_id, "results"))


@api.get("/import/batches/<batch_id>/errors")
def batch_errors(batch_id: str) -> Response:
    return _vary_on_accept(_outcome_list(batch_id, "errors"))


@api.get("/import/batches/<batch_id>/warnings")
def batch_warnings(batch_id: str) -> Response:
    return _vary_on_accept(_outcome_list(batch_id, "warnings"))
