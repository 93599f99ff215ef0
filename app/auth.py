"""Bearer-key authentication of every ``/v1`` request."""

from __future__ import annotations

from flask import g, request

from app.errors import Unauthorized
from app.extensions import db_session
from importer.models import Org
from importer.orgs import org_for_key


def authenticate() -> None:
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise Unauthorized("Send your API key in the header 'Authorization: Bearer ak_...'.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("The Authorization header must read 'Bearer ak_...'.")
    org = org_for_key(db_session(), token.strip())
    if org is None:
        raise Unauthorized("The API key is not valid (unknown or revoked).")
    g.org = org


def current_org() -> Org:
    org: Org = g.org
    return org
