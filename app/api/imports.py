"""The import call: ``POST /v1/import/{slug}``.

Synchronously: authenticate, parse, validate every record, accept the batch
(batch, chunks and idempotency key committed together), hand the chunks to the
workers. Then either wait for the workers (small batches) and answer 200/400, or
answer 202 with a ``Location`` to poll.
"""

from __future__ import annotations

import logging

import orjson
import sqlalchemy as sa
from flask import Response, g, request

from app import idempotency
from app.api import api
from app.api.batches import wait_until_done
from app.auth import current_org
from app.errors import NotFound, Unavailable
from app.extensions import db_session, services
from app.parsing import parse_records, read_body
from importer import batches, reports
from importer.models import ImportBatch
from importer.outcomes import batch_body, http_status
from importer.validation import validate_records
from worker.dispatch import mark_dispatched

log = logging.getLogger(__name__)


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


def _dispatch(batch_id: str) -> None:
    """Hand the batch's chunks to the broker now; if that fails the relay will."""
    svc = services()
    session = db_session()
    chunk_ids = batches.pending_chunk_ids(session, batch_id)
    if not chunk_ids:
        return
    try:
        svc.send_chunks(chunk_ids)
    except Exception:
        log.warning("could not queue batch %s now; the relay will", batch_id, exc_info=True)
        session.rollback()
        return
    mark_dispatched(session, chunk_ids)
    session.commit()
    log.info("queued chunk(s) %s of batch %s", chunk_ids, batch_id)


@api.post("/import/<slug>")
def import_records(slug: str) -> Response:
    svc = services()
    settings = svc.settings
    org = current_org()
    session = db_session()
    report = reports.active_report(session, org.id, slug)
    if report is None:
        raise NotFound(f"No import report {slug!r} in this org.", code="report_not_found")
    raw = read_body()
    records = parse_records(raw, settings)
    received_count = len(records)

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

    try:
        outcome = validate_records(
            records,
            base_object=report.base_object,
            mapping=report.mapping,
            required=report.required,
            org_choices=org.choices(),
        )
        del records
        try:
            svc.check_broker()
        except Exception as error:
            raise Unavailable(
                "The work queue is unreachable; nothing was accepted. Retry later.",
                headers={"Retry-After": "5"},
            ) from error
        batch = batches.accept_batch(
            session,
            org=org,
            report=report,
            received_count=received_count,
            outcome=outcome,
            chunk_size=settings.chunk_size,
            request_id=g.get("request_id"),
        )
        if key_id is not None:
            idempotency.attach_batch(session, key_id, batch.id)
        session.commit()
    except BaseException:
        session.rollback()
        if key_id is not None:
            idempotency.release(svc.db, key_id)
        raise
    del outcome
    log.info("accepted batch %s (%d records) for report %s", batch.id, batch.received_count, slug)

    async_applied = _wants_async()
    if async_applied or batch.received_count > settings.sync_max_records:
        # Answer with the batch as accepted: 202 "queued" (or 400 at once when no
        # record was valid), whatever the workers manage before the answer leaves.
        status = http_status(batch)
        body = orjson.dumps(batch_body(session, batch, settings.inline_items))
        _dispatch(batch.id)
    else:
        _dispatch(batch.id)
        wait_until_done(session, batch, settings.sync_wait_seconds)
        status = http_status(batch)
        body = orjson.dumps(batch_body(session, batch, settings.inline_items))
    if key_id is not None:
        idempotency.record_response(svc.db, key_id, status, body)
    return _response(status, body, batch.id, async_applied)
