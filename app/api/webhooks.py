"""Webhook endpoints and their deliveries: ``/v1/webhooks``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response
from sqlalchemy import orm

from app.api import api
from app.auth import current_org
from app.blueprint import sends
from app.errors import (
    InvalidBody,
    InvalidWebhookUrl,
    PayloadTooLarge,
    UnsupportedMediaType,
    WebhookNotFound,
)
from app.extensions import db_session, services
from app.pagination import query_page, scope_digest
from app.schemas import (
    BodyHeadersSchema,
    PageQuerySchema,
    WebhookCreateSchema,
    WebhookDeliveryPageSchema,
    WebhookPageSchema,
    WebhookPathSchema,
    WebhookSchema,
)
from importer import listing, webhooks
from importer.models import WebhookDelivery, WebhookEndpoint
from importer.webhook_targets import url_refusal

TAGS = ["Webhooks"]
_EXAMPLE = {
    "url": "https://example.com/hooks/importer",
    "events": ["Import.Completed", "Import.Failed"],
    "secret": "whsec-3b8f0c1e9a7d4f52",
}


def _webhook_or_404(webhook_id: str) -> WebhookEndpoint:
    endpoint = webhooks.active_endpoint(db_session(), current_org().id, webhook_id)
    if endpoint is None:
        raise WebhookNotFound(f"No webhook {webhook_id!r} in this org.")
    return endpoint


@api.post("/webhooks", tags=TAGS)
@api.arguments(WebhookCreateSchema, example=_EXAMPLE)
@api.response(
    201, WebhookSchema, description="The endpoint (without its secret).", headers=sends("Location")
)
@api.request_headers(BodyHeadersSchema)
@api.errors(PayloadTooLarge, UnsupportedMediaType, InvalidBody, InvalidWebhookUrl)
def create_webhook(body: dict[str, Any]) -> tuple[WebhookEndpoint, int, dict[str, str]]:
    """Register a webhook endpoint

    When a batch of the org ends (not a dry run), each endpoint subscribed to its event
    gets a POST of `{event_id, event_type, occurred_at, data}` (`data`: the batch without
    its per-record lists), signed in `X-Importer-Signature: sha256=<HMAC-SHA256 of the
    raw body with the secret>`. Delivered at least once, retried with exponential
    backoff; dedupe on `event_id`. Only public addresses are reached: each attempt
    resolves the name again, connects to the address it checked, and never follows a
    redirect.
    """
    refusal = url_refusal(body["url"], services().settings.webhook_allow_networks)
    if refusal is not None:
        raise InvalidWebhookUrl(
            f"The webhook URL is refused: {refusal}. Webhooks are sent to public addresses "
            "only, unless the operator allows a network (IMPORTER_WEBHOOK_ALLOW_NETWORKS).",
            errors=[{"field": "url", "message": f"{refusal}, which webhooks may not reach"}],
        )
    session = db_session()
    endpoint = webhooks.create_endpoint(session, current_org().id, **body)
    session.commit()
    return endpoint, 201, {"Location": f"/v1/webhooks/{endpoint.id}"}


@api.get("/webhooks", tags=TAGS)
@api.arguments(PageQuerySchema, location="query")
@api.response(200, WebhookPageSchema, description="A page of endpoints.")
def list_webhooks(page: dict[str, Any]) -> dict[str, Any]:
    """List the org's webhook endpoints, oldest first"""
    org_id = current_org().id
    session = db_session()
    query = sa.select(WebhookEndpoint).where(
        WebhookEndpoint.org_id == org_id, WebhookEndpoint.disabled_at.is_(None)
    )
    return query_page(
        session,
        query,
        [WebhookEndpoint.created_at, WebhookEndpoint.id],
        page,
        entities=True,
        scope=scope_digest("webhooks", org_id),
        kinds=("time", "str"),
        total=lambda: listing.bounded_count(session, query),
    )


@api.get("/webhooks/<webhook_id>", tags=TAGS)
@api.path_parameters(WebhookPathSchema)
@api.response(200, WebhookSchema, description="The endpoint.")
@api.errors(WebhookNotFound)
def get_webhook(webhook_id: str) -> WebhookEndpoint:
    """Read a webhook endpoint"""
    return _webhook_or_404(webhook_id)


@api.delete("/webhooks/<webhook_id>", tags=TAGS)
@api.path_parameters(WebhookPathSchema)
@api.response(204, description="Disabled.")
@api.errors(WebhookNotFound)
def disable_webhook(webhook_id: str) -> Response:
    """Disable a webhook endpoint

    No new deliveries; its pending ones are given up, not attempted.
    """
    endpoint = _webhook_or_404(webhook_id)
    session = db_session()
    webhooks.disable_endpoint(session, endpoint)
    session.commit()
    return Response(status=204)


@api.get("/webhooks/<webhook_id>/deliveries", tags=TAGS)
@api.path_parameters(WebhookPathSchema)
@api.arguments(PageQuerySchema, location="query")
@api.response(200, WebhookDeliveryPageSchema, description="A page of deliveries.")
@api.errors(WebhookNotFound)
def webhook_deliveries(page: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """List an endpoint's deliveries and their attempts, newest first"""
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
        page,
        descending=True,
        entities=True,
        scope=scope_digest("deliveries", endpoint.id),
        kinds=("time", "str"),
        total=lambda: listing.bounded_count(session, query),
    )
