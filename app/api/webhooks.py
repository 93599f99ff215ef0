"""Webhook endpoints and their deliveries: ``/v1/webhooks``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response
from sqlalchemy import orm

from app.api import api
from app.auth import current_org
from app.errors import InvalidWebhookUrl, WebhookNotFound
from app.extensions import db_session, services
from app.pagination import query_page, scope_digest
from app.parsing import json_body
from app.schemas import load_body, webhook_create_schema
from importer import listing, webhooks
from importer.models import WebhookDelivery, WebhookEndpoint
from importer.webhook_targets import url_refusal


def _webhook_or_404(webhook_id: str) -> WebhookEndpoint:
    endpoint = webhooks.active_endpoint(db_session(), current_org().id, webhook_id)
    if endpoint is None:
        raise WebhookNotFound(f"No webhook {webhook_id!r} in this org.")
    return endpoint


@api.post("/webhooks")
def create_webhook() -> tuple[dict[str, Any], int, dict[str, str]]:
    settings = services().settings
    body = load_body(webhook_create_schema, json_body(settings))
    refusal = url_refusal(body["url"], settings.webhook_allow_networks)
    if refusal is not None:
        raise InvalidWebhookUrl(
            f"The webhook URL is refused: {refusal}. Webhooks are sent to public addresses "
            "only, unless the operator allows a network (IMPORTER_WEBHOOK_ALLOW_NETWORKS).",
            errors=[{"field": "url", "message": f"{refusal}, which webhooks may not reach"}],
        )
    session = db_session()
    endpoint = webhooks.create_endpoint(session, current_org().id, **body)
    session.commit()
    return webhooks.endpoint_body(endpoint), 201, {"Location": f"/v1/webhooks/{endpoint.id}"}


@api.get("/webhooks")
def list_webhooks() -> dict[str, Any]:
    org_id = current_org().id
    session = db_session()
    query = sa.select(WebhookEndpoint).where(
        WebhookEndpoint.org_id == org_id, WebhookEndpoint.disabled_at.is_(None)
    )
    return query_page(
        session,
        query,
        [WebhookEndpoint.created_at, WebhookEndpoint.id],
        entities=True,
        scope=scope_digest("webhooks", org_id),
        kinds=("time", "str"),
        item=webhooks.endpoint_body,
        total=lambda: listing.bounded_count(session, query),
    )


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
    session = db_session()
    query = (
        sa.select(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.org_id == endpoint.org_id,
        )
        .options(orm.defer(WebhookDelivery.body))
    )
    return query_page(
        session,
        query,
        [WebhookDelivery.created_at, WebhookDelivery.id],
        descending=True,
        entities=True,
        scope=scope_digest("deliveries", endpoint.id),
        kinds=("time", "str"),
        item=webhooks.delivery_body,
        total=lambda: listing.bounded_count(session, query),
    )
