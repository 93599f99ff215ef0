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
from app.blueprint import sends
from app.errors import BatchNotDone, BatchNotFound, DetailsExpired, InvalidParameter
from app.extensions import db_session, services
from app.pagination import Key, PageRequest, paged, query_page, scope_digest
from app.schemas import (
    OUTCOME_STREAMS,
    BatchListQuerySchema,
    BatchPathSchema,
    BatchSchema,
    BatchSummaryPageSchema,
    BatchWaitQuerySchema,
    ProblemItemPageSchema,
    ResultItemPageSchema,
    outcome_query_schema,
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


TAGS = ["Batches"]


@api.get("/import/batches", tags=TAGS)
@api.arguments(BatchListQuerySchema, location="query")
@api.answers(
    200, BatchSummaryPageSchema, description="A page of batches, without their per-record lists."
)
def list_batches(args: dict[str, Any]) -> dict[str, Any]:
    """List the org's batches, newest first"""
    org_id = current_org().id
    conditions = [ImportBatch.org_id == org_id]
    status: BatchStatus | None = args.get("status")
    if status is not None:
        conditions.append(ImportBatch.status == status)
    slug = args.get("slug")
    if slug:
        conditions.append(ImportBatch.slug == slug)
    session = db_session()
    query = sa.select(ImportBatch).where(*conditions)
    return query_page(
        session,
        query,
        [ImportBatch.seq],
        args,
        descending=True,
        entities=True,
        scope=scope_digest("batches", org_id, status.value if status else None, slug),
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


@api.get("/import/batches/<batch_id>", tags=TAGS)
@api.path_parameters(BatchPathSchema)
@api.arguments(BatchWaitQuerySchema, location="query")
@api.answers(
    200,
    BatchSchema,
    description="The batch. With `?wait=N` it is answered once the batch is done or the wait "
    "ran out, or at once, with Retry-After, when every waiting slot of the web process is "
    "taken (IMPORTER_SYNC_WAITERS).",
    headers=sends("RetryAfterOptional"),
)
@api.errors(BatchNotFound)
def get_batch(args: dict[str, Any], batch_id: str) -> Response:
    """Read a batch (optionally long-polling until it is done)
    ---
    ``?wait=N`` long-polls, so a client need not poll in a tight loop. Without a free
    waiting slot (app.waiting) it answers at once, with ``Retry-After`` while the
    batch runs. ``?inline=N`` lists at most N results, errors and warnings each
    (``?inline=0``: the status and counts alone).
    """
    batch = _batch_or_404(batch_id)
    svc = services()
    wait = args["wait"]
    may_wait = True
    if wait > 0 and not BatchStatus(batch.status).is_done:
        with svc.waiting.claim() as may_wait:
            if may_wait:
                wait_until_done(db_session(), batch, wait)
    inline = svc.settings.inline_items if args["inline"] is None else args["inline"]
    response = jsonify(outcomes.batch_body(db_session(), batch, inline))
    if not may_wait and not BatchStatus(batch.status).is_done:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


JSON = "application/json"
#: What ``Accept`` may ask for; JSON first, so it wins a tie (``*/*``, no header).
_OUTCOME_TYPES = (JSON, outcomes.NDJSON, outcomes.CSV)


def _outcome_list(
    args: dict[str, Any], batch_id: str, kind: outcomes.Kind
) -> Response | dict[str, Any]:
    batch = _batch_or_404(batch_id)
    if batch.details_purged_at is not None:
        raise DetailsExpired(
            f"The {kind} of batch {batch.id} were deleted after "
            f"{services().settings.batch_detail_retention_days} days "
            f"(IMPORTER_BATCH_DETAIL_RETENTION_DAYS); its summary is still at "
            f"GET /v1/import/batches/{batch.id}."
        )
    media = request.accept_mimetypes.best_match(_OUTCOME_TYPES, default=JSON)
    names = args.get("item_fields")
    if media == JSON and names:
        raise InvalidParameter(
            "Query parameter 'fields' chooses the fields of a stream (Accept: "
            "application/x-ndjson or text/csv); a JSON page always holds every field."
        )
    if media == JSON:
        session = db_session()

        def fetch(page: PageRequest, n: int) -> list[tuple[Key, Any]]:
            # Chunks are skipped by their counts, so any position costs what the first
            # does: the cursor carries only the position.
            return [((), item) for item in outcomes.page(session, batch.id, kind, page.offset, n)]

        return paged(
            args,
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
    body = outcomes.stream(services().db.session, chunk_ids, kind, fmt, names)
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


def _outcome_view(kind: outcomes.Kind, item_page: type) -> None:
    """``GET /v1/import/batches/<batch_id>/<kind>``: JSON pages, or one stream."""
    streams = {
        media: {"schema": OUTCOME_STREAMS[kind][fmt]}
        for media, fmt in ((outcomes.NDJSON, "ndjson"), (outcomes.CSV, "csv"))
    }

    @api.path_parameters(BatchPathSchema)
    @api.arguments(outcome_query_schema(kind, outcomes.FIELDS[kind]), location="query")
    @api.answers(
        200,
        item_page,
        description=f"A page of the batch's {kind} (JSON, the default), or all of them in "
        "one stream (`Accept: application/x-ndjson` or `text/csv`).",
        headers=sends("TotalCount", "ContentDisposition"),
    )
    @api.errors(BatchNotFound, BatchNotDone, DetailsExpired)
    @api.doc(responses={"200": {"content": streams}})
    def view(args: dict[str, Any], batch_id: str) -> Response:
        return _vary_on_accept(_outcome_list(args, batch_id, kind))

    view.__doc__ = f"""List a batch's {kind}, by record index

    JSON pages by default (`limit`, `offset` or `cursor`). With `Accept:
    application/x-ndjson` or `Accept: text/csv`, every one of the batch's {kind} in one
    streamed response, in index order (`limit` and `offset` do not apply;
    `X-Total-Count` says how many), once the batch is done.
    """
    api.add_url_rule(
        f"/import/batches/<batch_id>/{kind}",
        endpoint=f"batch_{kind}",
        view_func=view,
        methods=["GET"],
        tags=TAGS,
    )


_outcome_view("results", ResultItemPageSchema)
_outcome_view("errors", ProblemItemPageSchema)
_outcome_view("warnings", ProblemItemPageSchema)
