"""What the tests share: records and mappings, settings, brokers that record or run
chunks inline, shortcuts past HTTP, a /metrics scrape, the schema drift of a migrated
database. Plain functions, constants and classes (the fixtures are in the conftest
files); importing this module creates nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from limits.storage import RedisStorage
from prometheus_client.parser import text_string_to_metric_families

from app.ratelimits import KEY_PREFIX
from importer.batches import accept_batch
from importer.broker import QUEUES, ChunkMessage
from importer.config import Settings
from importer.db import Base, Database, make_engine
from importer.models import Lane, Org
from importer.outbox import Outbox
from importer.validation import screen_records, validate_records
from worker.tasks import run_chunk, run_delivery

if TYPE_CHECKING:
    import fakeredis

VENDOR_MAPPING = {
    "external_id": "Supplier ID",
    "name": "Supplier Name",
    "website": "Website",
    "status": "Status",
    "tags": "Tags",
    "enterprise": "Enterprise",
    "raw_irq_score": "IRQ Score",
    "next_assessment_date": "Next Assessment",
    "primary_contact_email": "Contact Email",
}
SERVICE_MAPPING = {
    "external_id": "Service ID",
    "name": "Service Name",
    "vendor_external_id": "Supplier ID",
    "hosting_model": "Hosting",
    "criticality_tier": "Tier",
    "data_types": "Data Types",
}
ASSESSMENT_MAPPING = {
    "external_id": "Assessment ID",
    "vendor_external_id": "Supplier ID",
    "name": "Name",
    "status": "Status",
    "period_start": "Start",
    "period_end": "End",
    "score_percent": "Score",
}
MAPPINGS = {"vendor": VENDOR_MAPPING, "service": SERVICE_MAPPING, "assessment": ASSESSMENT_MAPPING}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "IMPORTER_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'importer.sqlite'}",
    }
    return Settings.from_env(values, **overrides)


def limits_storage(client: fakeredis.FakeRedis) -> RedisStorage:
    """The ``limits`` library's Redis storage over a fakeredis client (its Lua scripts
    run in fakeredis through lupa): built on the client's connection pool."""
    return RedisStorage(
        "redis://",
        connection_pool=client.connection_pool,
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
    )


class RecordingBroker:
    """An ``importer.broker.Broker`` that only records what it is given (nothing runs).
    While ``down`` is set, it refuses everything as an unreachable broker would;
    ``lost`` makes the next ``lost_queues`` say the broker came back empty."""

    def __init__(self) -> None:
        self.messages: list[ChunkMessage] = []
        self.deliveries: list[str] = []
        self.down = False
        self.lost = False

    @property
    def chunk_ids(self) -> list[int]:
        return [message.chunk_id for message in self.messages]

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def send_chunks(self, messages: Sequence[ChunkMessage]) -> None:
        self._check()
        self.messages.extend(messages)

    def send_deliveries(self, delivery_ids: Sequence[str]) -> None:
        self._check()
        self.deliveries.extend(delivery_ids)

    def ping(self) -> None:
        self._check()

    def lost_queues(self) -> bool:
        self._check()
        lost, self.lost = self.lost, False
        return lost

    def depths(self) -> dict[str, int | None]:
        return dict.fromkeys(QUEUES, 0)


def recording_outbox(db: Database, settings: Settings | None = None) -> Outbox:
    """An outbox over ``db`` whose broker only records (``outbox.broker``)."""
    settings = settings or Settings.from_env({"DATABASE_URL": db.url})
    return Outbox(settings, db, RecordingBroker())


class InlineBroker:
    """Stands in for the broker and a worker (an ``importer.broker.Broker``): runs each
    chunk's task function as it is sent (or, when ``hold`` is set, keeps the chunk ids
    until the test runs them). Chunks sent while one runs (the bulk lane's next
    releases) run after it, in order, as a worker would take them.

    Webhook deliveries handed to it are only recorded in ``webhooks_sent`` (no test
    POSTs anywhere by accident), unless ``deliver_webhooks`` is set: then each is
    attempted at once, for real, with the outbox's allowed networks. While ``down``
    is set, it refuses everything as an unreachable broker would."""

    def __init__(self, settings: Settings, db: Database, notifier: Any) -> None:
        self.outbox = Outbox(settings, db, self)
        self.db = db
        self.notifier = notifier
        self.hold = False
        self.held: list[int] = []
        self.sent: list[int] = []
        self.messages: list[ChunkMessage] = []
        self.deliver_webhooks = False
        self.webhooks_sent: list[str] = []
        self.down = False
        self._queue: list[int] = []
        self._running = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    def send_chunks(self, messages: Sequence[ChunkMessage]) -> None:
        self._check()
        self.messages.extend(messages)
        chunk_ids = [message.chunk_id for message in messages]
        self.sent.extend(chunk_ids)
        if self.hold:
            self.held.extend(chunk_ids)
        else:
            self._run(chunk_ids)

    def _run(self, chunk_ids: Sequence[int]) -> None:
        self._queue.extend(chunk_ids)
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                run_chunk(self.outbox, self.notifier, self._queue.pop(0))
        finally:
            self._running = False

    def run_held(self) -> None:
        """Run what is held, and what the bulk lane releases meanwhile, until nothing is."""
        while self.held:
            held, self.held = self.held, []
            self._run(held)

    def send_deliveries(self, delivery_ids: Sequence[str]) -> None:
        self._check()
        self.webhooks_sent.extend(delivery_ids)
        if self.deliver_webhooks:
            for delivery_id in delivery_ids:
                run_delivery(
                    self.db,
                    delivery_id,
                    max_attempts=8,
                    allowed_networks=self.outbox.settings.webhook_allow_networks,
                )

    def ping(self) -> None:
        self._check()

    def lost_queues(self) -> bool:
        return False

    def depths(self) -> dict[str, int | None]:
        return dict.fromkeys(QUEUES, 0)


#: What the tests' webhook receivers (``tests/webhook_receiver.py``) listen on.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def accept_records(
    db: Database,
    org: Org,
    report: Any,
    records: list[dict[str, Any]],
    *,
    chunk_size: int = 2,
    deferred: bool = False,
    dry_run: bool = False,
    lane: Lane = Lane.BULK,
) -> tuple[str, list[int]]:
    """Accept ``records`` for ``report`` as the import call does, without HTTP:
    validated here, or (``deferred``) left to the workers. Returns the batch id and
    its pending chunks' ids, for a test to run (or not) with ``run_chunk``."""
    if deferred:
        outcome = screen_records(records, base_object=report.base_object, mapping=report.mapping)
    else:
        outcome = validate_records(records, base_object=report.base_object, mapping=report.mapping)
    with db.session() as session:
        accepted = accept_batch(
            session,
            org=session.merge(org),
            report=session.merge(report),
            received_count=len(records),
            outcome=outcome,
            chunk_size=chunk_size,
            validated=not deferred,
            dry_run=dry_run,
            lane=lane,
        )
        return accepted.batch.id, accepted.chunk_ids


def vendor(n: int, **extra: Any) -> dict[str, Any]:
    """A valid vendor record in the incoming names of ``VENDOR_MAPPING``."""
    return {"Supplier ID": f"V-{n:05d}", "Supplier Name": f"Vendor {n}", **extra}


#: A Flask URL rule's ``<converter:name>`` (its group: the name).
FLASK_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def scrape(client, **headers) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def schema_drift(url: str) -> list[object]:
    """What the migrated database at ``url`` and the models disagree on (nothing: [])."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


#: A valid webhook body (an HTTPS URL, both events, a long enough secret).
WEBHOOK = {
    "url": "https://example.com/hooks",
    "events": ["Import.Completed", "Import.Failed"],
    "secret": "a-secret-of-at-least-16",
}
