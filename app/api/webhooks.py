"""Webhook endpoints and their deliveries: ``/v1/webhooks``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response
from sqlalchemy import orm

from app.api import api
from app.auth import current_org
from app.errors import InvalidBody, NotFound
from app.extensions import db_session, services
from app.pagination import page_args, page_body
from app.parsing import json_body
from app.schemas import load_body, webhook_create_schema
from importer import webhooks
from importer.models import WebhookDelivery, WebhookEndpoint
from importer.webhook_targets import url_refusal


def _webhook_or_404(webhook_id: str) -> WebhookEndpoint:
    endpoint = webhooks.active_endpoint(db_session(), current_org().id, webhook_id)
    if endpoint is None:
        raise NotFound(f"No webhook {webhook_id!r} in this org.", code="webhook_not_found")
    return endpoint


@api.post("/webhooks")
def create_webhook() -> tuple[dict[str, Any], int, dict[str, str]]:
    settings = services().settings
    body = load_body(webhook_create_schema, json_body(settings))
    refusal = url_refusal(body["url"], settings.webhook_allow_networks)
    if refusal is not None:
        raise InvalidBody(
            f"The webhook URL is refused: {refusal}. Webhooks are sent to public addresses "
            "only, unless the operator allows a network (IMPORTER_WEBHOOK_ALLOW_NETWORKS).",
            code="invalid_webhook_url",
            errors=[{"field": "url", "message": f"{refusal}, which webhooks may not reach"}],
        )
    session = db_session()
    endpoint = webhooks.create_endpoint(session, current_org().id, **body)
    session.commit()
    return webhooks.endpoint_body(endpoint), 201, {"Location": f"/v1/webhooks/{endpoint.id}"}


@api.get("/webhooks")
def list_webhooks() -> dict[str, Any]:
    limit, offset = page_args()
    session = db_session()
    live = sa.and_(
        WebhookEndpoint.org_id == current_org().id, WebhookEndpoint.disabled_at.is_(None)
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(WebhookEndpoint).where(live))
    found = session.scalars(
        sa.select(WebhookEndpoint)
        .where(live)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        .limit(limit)
        .offset(offset)
    )
    return page_body([webhooks.endpoint_body(e) for e in found], total or 0, limit, offset)


@api.get("/webhooks/<webhook_id>")
def get_webhook(webhook_id: str) -> dict[str, Any]:
    return webhooks.endpoint_body(_webhook_or_404(webhook_id))


@api.delete("/webhooks/<webhook_id>")
def disable_webhook(webhook_id: str) -> Response:
    endpoint = _webhook_or_404(webhook_id)
    session = db_session()
    webhooks.disable_endpoint(session, endpoint)
    session.commit()
    return Response(status=204)


@api.get("/webhooks/<webhook_id>/deliveries")
def webhook_deliveries(webhook_id: str) -> dict[str, Any]:
    endpoint = _webhook_or_404(webhook_id)
    limit, offset = page_args()
    session = db_session()
    mine = sa.and_(
        WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.org_id == endpoint.org_id
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(WebhookDelivery).where(mine))
    found = session.scalars(
        sa.select(WebhookDelivery)
        .where(mine)
        .options(orm.defer(WebhookDelivery.body))
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return page_body([webhooks.delivery_body(d) for d in found], total or 0, limit, offset)
