"""The base-object read API: ``/v1/vendors``, ``/v1/services``, ``/v1/assessments``.

Routes and bodies are generated from the field catalog, so a new field or base
object appears here without a change to this module.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.api import api
from app.auth import current_org
from app.errors import OBJECT_NOT_FOUND
from app.extensions import db_session
from app.pagination import query_page, scope_digest
from app.schemas import (
    OBJECT_PAGE_SCHEMAS,
    OBJECT_SCHEMAS,
    ObjectListQuerySchema,
    object_path_schema,
)
from importer import catalog, listing
from importer.catalog import BaseObject, Kind
from importer.db import unix
from importer.models import OBJECT_TABLES


def _date_seconds(value: dt.date | None) -> int | None:
    """Dates leave the service as the Unix seconds of their midnight UTC."""
    if value is None:
        return None
    return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())


def object_body(base: BaseObject, row: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": row.id}
    for spec in base.fields:
        value = getattr(row, spec.name)
        body[spec.name] = _date_seconds(value) if spec.kind is Kind.DATE else value
        if spec.reference_column:
            body[spec.reference_column] = getattr(row, spec.reference_column)
    body["created_at"] = unix(row.created_at)
    body["updated_at"] = unix(row.updated_at)
    return body


def _list_view(base: BaseObject) -> Any:
    table = OBJECT_TABLES[base.name]

    @api.arguments(ObjectListQuerySchema, location="query")
    @api.answers(200, OBJECT_PAGE_SCHEMAS[base.name], description=f"A page of {base.plural}.")
    def view(args: dict[str, Any]) -> dict[str, Any]:
        org_id = current_org().id
        session = db_session()
        conditions = [table.c.org_id == org_id]
        external_id = args.get("external_id")
        since = args.get("updated_since")
        # Changed since T: by (updated_at, id), the incremental sync's walk; otherwise
        # oldest first. Each order is an index of the table.
        order = (
            [table.c.updated_at, table.c.id]
            if since is not None
            else [table.c.created_at, table.c.id]
        )
        if external_id is not None:
            conditions.append(table.c.external_id == external_id)
        else:
            # Never past a row that a write still in progress could be joined by.
            conditions.append(order[0] < listing.write_horizon(session, org_id))
        if since is not None:
            conditions.append(table.c.updated_at >= dt.datetime.fromtimestamp(since, dt.UTC))
        query = sa.select(table).where(*conditions)

        def total() -> tuple[int, bool]:
            if external_id is None and since is None:
                return listing.object_count(session, org_id, base.name), False
            return listing.bounded_count(session, query)

        return query_page(
            session,
            query,
            order,
            args,
            scope=scope_digest(base.plural, org_id, external_id, since),
            kinds=("time", "str"),
            item=lambda row: object_body(base, row),
            total=total,
        )

    view.__doc__ = f"List the org's {base.plural}, oldest first"
    return view


def _detail_view(base: BaseObject) -> Any:
    table = OBJECT_TABLES[base.name]

    @api.path_parameters(object_path_schema(base))
    @api.answers(200, OBJECT_SCHEMAS[base.name], description=f"The {base.name}.")
    @api.errors(OBJECT_NOT_FOUND[base.name])
    def view(object_id: str) -> dict[str, Any]:
        row = (
            db_session()
            .execute(
                sa.select(table).where(table.c.id == object_id, table.c.org_id == current_org().id)
            )
            .one_or_none()
        )
        if row is None:
            raise OBJECT_NOT_FOUND[base.name](f"No {base.name} {object_id!r} in this org.")
        return object_body(base, row)

    view.__doc__ = f"Read a {base.name}"
    return view


TAGS = ["Base objects"]
for _base in catalog.CATALOG.values():
    api.add_url_rule(
        f"/{_base.plural}",
        endpoint=f"list_{_base.plural}",
        view_func=_list_view(_base),
        methods=["GET"],
        tags=TAGS,
    )
    api.add_url_rule(
        f"/{_base.plural}/<object_id>",
        endpoint=f"get_{_base.name}",
        view_func=_detail_view(_base),
        methods=["GET"],
        tags=TAGS,
    )
