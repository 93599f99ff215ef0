"""What the integration tests share beyond tests/factories.py: polling, an org of a
running stack, a vendor report made directly in a database, fault-test timings.
Plain functions and constants (the fixtures are in tests/integration/conftest.py);
importing this module creates nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa

from importer import orgs, reports
from importer.db import Database
from importer.models import OBJECT_TABLES
from tests.factories import VENDOR_MAPPING
from tests.integration.stack import Api, Stack


def wait_until(
    predicate: Callable[[], bool], timeout: float = 30, what: str = "condition", every: float = 0.01
) -> None:
    """Poll an observable condition (a lock wait, a row count, a batch's progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


#: Recovery timings shortened so a fault test sees recovery within seconds.
FAST_RECOVERY = {
    "IMPORTER_RELAY_INTERVAL_SECONDS": "0.5",
    "IMPORTER_RELAY_GRACE_SECONDS": "1",
    "IMPORTER_STUCK_AFTER_SECONDS": "3",
    "IMPORTER_VISIBILITY_TIMEOUT_SECONDS": "15",
    "IMPORTER_REDISPATCH_AFTER_SECONDS": "20",
    # One web process, so what /readyz saw is what the next request sees.
    "IMPORTER_WEB_WORKERS": "1",
}


def new_org(stack: Stack) -> Api:
    created = orjson.loads(stack.run("create-org", f"org-{uuid.uuid4().hex[:6]}"))
    return Api(stack.base_url, created["api_key"], created["org_id"])


def vendor_report(db: Database, org_name: str) -> tuple[Any, Any]:
    """A new org and a vendor report of it (``tests.factories.VENDOR_MAPPING``)."""
    with db.session() as session:
        org, _ = orgs.create_org(session, org_name)
        report = reports.create_report(
            session,
            org,
            slug=f"v-{uuid.uuid4().hex[:6]}",
            report_name="v",
            base_object="vendor",
            mapping=VENDOR_MAPPING,
        )
    return org, report


#: Sessions of the current database waiting on a lock now.
_WAITING_ON_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def waiting_on_a_lock(db) -> bool:
    """Whether a session of ``db``'s PostgreSQL database waits on a lock now."""
    with db.engine.connect() as conn:
        return bool(conn.scalar(sa.text(_WAITING_ON_A_LOCK)))


def sessions_waiting_on_a_lock(database_url: str) -> int:
    """How many sessions of the database at ``database_url`` (a running stack's) wait
    on a lock now."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(_WAITING_ON_A_LOCK).fetchone()
    return int(row[0]) if row else 0


def object_rows(
    db: Database, org: Any, table: sa.Table = OBJECT_TABLES["vendor"]
) -> dict[str, Any]:
    """The org's rows by external_id, with their row version (xmin, ctid)."""
    with db.session() as session:
        found = session.execute(
            sa.select(
                table,
                sa.literal_column("xmin::text").label("xmin"),
                sa.literal_column("ctid::text").label("ctid"),
            )
            .where(table.c.org_id == org.id)
            .order_by(table.c.external_id)
        )
        return {row.external_id: row for row in found}
