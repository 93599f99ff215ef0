"""The import call: ``POST /v1/import/{slug}``.

Synchronously: authenticate, parse, validate, accept the batch (batch, chunks and
idempotency key committed together), hand the chunks to the workers. A batch of at
most ``IMPORTER_SYNC_MAX_RECORDS`` records is validated here, record by record, and
waited for (200/400, or 202 after ``IMPORTER_SYNC_WAIT_SECONDS``). A larger batch
gets only the batch-wide checks here (duplicate external_ids, unreadable rows) and
is answered 202 at once; the workers validate it chunk by chunk, in parallel.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from typing import Any

import orjson
import sqlalchemy as sa
from flask import Response, g, request

from app import idempotency
from app.api import api
from app.api.batches import wait_until_done
from app.auth import current_org
from app.blueprint import sends
from app.errors import (
    BatchOverRateLimit,
    IdempotencyKeyReused,
    InvalidBody,
    InvalidIdempotencyKey,
    PayloadTooLarge,
    RateLimited,
    ReportNotFound,
    RequestInProgress,
    TooManyRecords,
    Unavailable,
    UnsupportedMediaType,
)
from app.extensions import db_session, services
from app.parsing import CSV_TYPES, JSON_TYPES, NDJSON_TYPES, ParsedBatch, parse_batch, read_body
from app.schemas import (
    CSV_RECORDS,
    NDJSON_RECORDS,
    BatchSchema,
    ImportHeadersSchema,
    ImportQuerySchema,
    ImportRequestSchema,
    SlugPathSchema,
)
from app.waiting import RETRY_AFTER_SECONDS
from importer import batches, logs, metrics, reports
from importer.models import BatchStatus, ImportBatch, ImportReport, Lane, Org
from importer.outcomes import batch_body, http_status
from importer.validation import ValidationOutcome, screen_records, validate_records

log = logging.getLogger(__name__)

MEDIA_TYPES = (*JSON_TYPES, *NDJSON_TYPES, *CSV_TYPES)


def _wants_async() -> bool:
    preferences = request.headers.get("Prefer", "")
    return any(
        part.split("=", 1)[0].strip().lower() == "respond-async"
        for part in preferences.replace(";", ",").split(",")
    )


def _response(status: int, body: bytes, batch_id: str, async_applied: bool) -> Response:
    response = Response(body, status=status, mimetype="application/json")
    if status == 202:
        response.headers["Location"] = f"/v1/import/batches/{batch_id}"
    if async_applied:
        response.headers["Preference-Applied"] = "respond-async"
    return response


def _replay(replay: idempotency.Replay) -> Response:
    if replay.status_code is not None and replay.body is not None:
        response = _response(replay.status_code, replay.body, replay.batch_id, False)
    else:
        # The first request was accepted and is still being answered.
        session = db_session()
        batch = session.scalars(
            sa.select(ImportBatch).where(ImportBatch.id == replay.batch_id)
        ).one()
        body = orjson.dumps(batch_body(session, batch, services().settings.inline_items))
        response = _response(http_status(batch), body, batch.id, False)
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _examine(
    parsed: ParsedBatch, report: ImportReport, org: Org, deferred: bool
) -> ValidationOutcome:
    """Validate the batch here, or (``deferred``) run only the batch-wide checks and
    leave the record-by-record validation to the workers."""
    if deferred:
        outcome = screen_records(
            parsed.records,
            base_object=report.base_object,
            mapping=report.mapping,
            external_ids=parsed.external_ids,
        )
        if parsed.malformed:  # screen_records numbers records 0, 1, 2...
            for problem_ in outcome.errors:
                problem_["index"] = parsed.indexes[problem_["index"]]
            outcome.valid = [(parsed.indexes[i], record) for i, record in outcome.valid]
    else:
        outcome = validate_records(
            parsed.records,
            indexes=parsed.indexes,
            base_object=report.base_object,
            mapping=report.mapping,
            required=report.required,
            org_choices=org.choices(),
        )
    if parsed.malformed:
        outcome.errors = list(
            heapq.merge(outcome.errors, parsed.malformed, key=lambda p: p["index"])
        )
        outcome.failed_count += len(parsed.malformed)
    return outcome


def _count_accepted(batch: ImportBatch, outcome: ValidationOutcome) -> None:
    """The metrics of what the web decided, once committed: the records it failed and
    their errors (the workers count the rest), and the batch's end if nothing is left."""
    if not batch.dry_run:
        metrics.count_records(
            failed=outcome.failed_count,
            errors=Counter(problem_["error_code"] for problem_ in outcome.errors),
        )
    if BatchStatus(batch.status).is_done and batch.completed_at is not None:
        seconds = (batch.completed_at - batch.received_at).total_seconds()
        metrics.observe_batch_end(BatchStatus(batch.status).value, seconds)


_EXAMPLE = {
    "data": [
        {
            "Supplier ID": "V-001",
            "Supplier Name": "Acme Cloud",
            "Website": "acme.example.com",
            "IRQ Score": "72",
        },
        {"Supplier ID": "V-002", "Supplier Name": "", "IRQ Score": "high"},
        {"Supplier ID": "V-003", "Supplier Name": "Initech", "Region": "EMEA"},
    ]
}
_DONE = "The batch, done: {} (or, in a dry run, would be), with each record's outcome."
_TEXT_BODIES = {
    **{media: {"schema": NDJSON_RECORDS} for media in NDJSON_TYPES},
    **{media: {"schema": CSV_RECORDS} for media in CSV_TYPES},
}


@api.post("/import/<import_slug:slug>", tags=["Imports"])
@api.path_parameters(SlugPathSchema)
@api.arguments(ImportQuerySchema, location="query")
@api.request_headers(ImportHeadersSchema)
@api.doc(
    requestBody={
        "required": True,
        "content": {
            "application/json": {"schema": ImportRequestSchema, "example": _EXAMPLE},
            **_TEXT_BODIES,
        },
    }
)
@api.answers(
    200,
    BatchSchema,
    description=_DONE.format("at least one record was written"),
    headers=sends("IdempotentReplayed"),
)
@api.answers(
    202,
    BatchSchema,
    description="Accepted and still running (over IMPORTER_SYNC_MAX_RECORDS records, "
    "'Prefer: respond-async', the workers took longer than IMPORTER_SYNC_WAIT_SECONDS, or, "
    "with Retry-After, every waiting slot of the web process was taken: "
    "IMPORTER_SYNC_WAITERS): poll the Location.",
    headers=sends("Location", "PreferenceApplied", "IdempotentReplayed", "RetryAfterOptional"),
)
@api.answers(
    400,
    BatchSchema,
    description=_DONE.format("no record was written"),
    headers=sends("PreferenceApplied", "IdempotentReplayed"),
)
@api.errors(
    ReportNotFound,
    RequestInProgress,
    PayloadTooLarge,
    TooManyRecords,
    BatchOverRateLimit,
    UnsupportedMediaType,
    (
        InvalidBody,
        "Not valid JSON (a non-empty `data` array of objects), NDJSON or CSV, not "
        "UTF-8, or not valid gzip.",
    ),
    InvalidIdempotencyKey,
    IdempotencyKeyReused,
    RateLimited,
)
def import_records(args: dict[str, Any], slug: str) -> Response:
    """Import a batch of records through a report

    Records come as JSON (`{"data": [record, ...]}`), NDJSON or CSV, keyed by the
    report's incoming names. Each is validated, then the valid ones are created or
    updated by `external_id` (with `?dry_run=true`: only reported). A record's problems
    are in `errors` (the record failed) and `warnings` (it did not), each naming its
    `index`. A batch of at most IMPORTER_SYNC_MAX_RECORDS records is validated before
    the answer; a larger one is answered 202 at once and validated by the workers.
    """
    svc = services()
    settings = svc.settings
    org = current_org()
    session = db_session()
    report = reports.active_report(session, org.id, slug)
    if report is None:
        raise ReportNotFound(f"No import report {slug!r} in this org.")
    dry_run: bool = args["dry_run"]
    raw = read_body(settings, MEDIA_TYPES)
    parsed = parse_batch(raw, settings, report.mapping.get("external_id"))
    received = parsed.received
    async_applied = _wants_async()
    deferred = received > settings.sync_max_records
    # The caller waits for the answer: the interactive lane, served first.
    lane = Lane.BULK if async_applied or deferred else Lane.INTERACTIVE

    key_id: int | None = None
    key = request.headers.get(idempotency.HEADER)
    if key is not None:
        request_hash = idempotency.fingerprint(slug, request.query_string, request.mimetype, raw)
        reserved = idempotency.begin(
            svc.db,
            org.id,
            idempotency.check_key(key),
            request_hash,
            settings.idempotency_ttl_seconds,
        )
        if isinstance(reserved, idempotency.Replay):
            return _replay(reserved)
        key_id = reserved
    del raw  # a large body is not kept through validation

    try:
        if svc.rate_limits is not None:  # counted once parsed, before anything is accepted
            svc.rate_limits.check_records(org.id, received)
        outcome = _examine(parsed, report, org, deferred)
        del parsed
        try:
            svc.check_broker()
        except Exception as error:
            raise Unavailable(
                "The work queue is unreachable; nothing was accepted. Retry later."
            ) from error
        accepted = batches.accept_batch(
            session,
            org=org,
            report=report,
            received_count=received,
            outcome=outcome,
            chunk_size=settings.chunk_size,
            validated=not deferred,
            dry_run=dry_run,
            lane=lane,
            handed_over=lane == Lane.INTERACTIVE,
            request_id=g.get("request_id"),
        )
        batch = accepted.batch
        if key_id is not None:
            idempotency.attach_batch(session, key_id, batch.id)
        session.commit()
    except BaseException:
        session.rollback()
        if key_id is not None:
            idempotency.release(svc.db, key_id)
        raise
    logs.bind(batch_id=batch.id)
    _count_accepted(batch, outcome)
    del outcome
    log.info(
        "accepted batch %s (%d records, %s lane) for report %s", batch.id, received, lane, slug
    )

    may_wait = False
    if lane == Lane.BULK:
        # Answer with the batch as accepted: 202 "queued" (or 400 at once when no
        # record can be written), whatever the workers manage before the answer leaves.
        status = http_status(batch)
        body = orjson.dumps(batch_body(session, batch, settings.inline_items))
        svc.outbox.after_accept(accepted)
    else:
        with svc.waiting.claim() as may_wait:
            if may_wait:
                # Watch for the completion before the work is sent, so it cannot be missed.
                with svc.notifier.watch(batch.id) as watch:
                    svc.outbox.after_accept(accepted)
                    wait_until_done(session, batch, settings.sync_wait_seconds, watch)
            else:  # every waiting slot of this process is taken (app.waiting): no wait
                svc.outbox.after_accept(accepted)
        status = http_status(batch)
        body = orjson.dumps(batch_body(session, batch, settings.inline_items))
    if key_id is not None:
        idempotency.record_response(svc.db, key_id, status, body)
    response = _response(status, body, batch.id, async_applied)
    if status == 202 and lane == Lane.INTERACTIVE and not may_wait:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
