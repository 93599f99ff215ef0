"""Tables.

The service's own records (orgs, keys, reports, batches, chunks) are ORM classes.
The base-object tables (vendors, services, assessments) are generated from the
field catalog as Core tables, because they are only ever written in bulk by
``importer.upsert`` and read by ``app.api.objects``, both through Core.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from importer import catalog
from importer.catalog import BaseObject, FieldSpec, Kind
from importer.db import Base, UTCDateTime, utcnow

#: JSON on every backend, JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
#: A 64-bit auto-incrementing key (SQLite only auto-increments INTEGER PRIMARY KEY).
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(enum_class: type[enum.Enum]) -> sa.Enum:
    """Store an enum by its value, as a VARCHAR (no database enum type to migrate)."""
    return sa.Enum(
        enum_class,
        native_enum=False,
        create_constraint=False,
        length=20,
        values_callable=lambda members: [member.value for member in members],
    )


class BatchStatus(enum.StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    #: At least one chunk could not be written after all its retries.
    FAILED = "failed"

    @property
    def is_done(self) -> bool:
        return self in (BatchStatus.COMPLETED, BatchStatus.FAILED)


class ChunkStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class Lane(enum.StrEnum):
    """Where a chunk waits for a worker (see ``importer.scheduler``)."""

    #: A batch whose caller waits for the answer: sent to the broker at once, and
    #: served first, by worker capacity the bulk lane never fills.
    INTERACTIVE = "interactive"
    #: Everything else: released to the broker a few chunks per org at a time.
    BULK = "bulk"


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    vendor_statuses: Mapped[list[str]] = mapped_column(
        JSONType, default=lambda: list(catalog.DEFAULT_VENDOR_STATUSES)
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    def choices(self) -> dict[str, list[str]]:
        """The org's settings that CHOICE fields with ``org_choices`` draw from."""
        return {"vendor_statuses": list(self.vendor_statuses)}


class ApiKey(Base):
    """One of an org's API keys (an org has several, so one can be rotated)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigSerial, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"), index=True)
    #: SHA-256 of the key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: The first characters of the key, to tell keys apart in listings.
    key_prefix: Mapped[str] = mapped_column(sa.String(16))
    #: What the operator calls it ("ci", "erp-2027"), optional.
    name: Mapped[str | None] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: When a request last authenticated with it, to the minute (written at most once
    #: a minute, not on every request).
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ImportReport(Base):
    __tablename__ = "import_reports"
    __table_args__ = (
        # A slug is unique among the org's live reports; archiving frees it.
        sa.Index(
            "uq_import_reports_org_id_slug_live",
            "org_id",
            "slug",
            unique=True,
            postgresql_where=sa.text("archived_at IS NULL"),
            sqlite_where=sa.text("archived_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"), index=True)
    slug: Mapped[str] = mapped_column(sa.String(100))
    report_name: Mapped[str] = mapped_column(sa.String(255))
    base_object: Mapped[str] = mapped_column(sa.String(40))
    #: service field name -> incoming field name
    mapping: Mapped[dict[str, str]] = mapped_column(JSONType)
    required: Mapped[list[str]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ImportBatch(Base):
    """One import request, from acceptance to completion.

    ``seq`` is assigned when the batch is accepted; it orders batches for the
    "later wins" rule (an upsert never overwrites a row written by a later batch).
    """

    __tablename__ = "import_batches"
    __table_args__ = (
        sa.Index("ix_import_batches_org_id_seq", "org_id", "seq"),
        # The org's batches list filtered by status or by slug, newest first.
        sa.Index("ix_import_batches_org_id_status_seq", "org_id", "status", "seq"),
        sa.Index("ix_import_batches_org_id_slug_seq", "org_id", "slug", "seq"),
        sa.Index("ix_import_batches_status_received_at", "status", "received_at"),
        # Batches finished in the last hour (operator views), and summaries past
        # their retention (importer.retention).
        sa.Index("ix_import_batches_completed_at", "completed_at"),
        # Finished batches whose details are still kept: the detail purge's work
        # list (a partial index stays as small as 30 days of batches).
        sa.Index(
            "ix_import_batches_details_kept",
            "completed_at",
            postgresql_where=sa.text("details_purged_at IS NULL AND completed_at IS NOT NULL"),
            sqlite_where=sa.text("details_purged_at IS NULL AND completed_at IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(BigSerial, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"))
    report_id: Mapped[str] = mapped_column(sa.ForeignKey("import_reports.id"), index=True)
    report_version: Mapped[int] = mapped_column(sa.Integer)
    # The report as used by this batch (it may change or be archived later).
    slug: Mapped[str] = mapped_column(sa.String(100))
    report_name: Mapped[str] = mapped_column(sa.String(255))
    base_object: Mapped[str] = mapped_column(sa.String(40))
    mapping: Mapped[dict[str, str]] = mapped_column(JSONType)
    required: Mapped[list[str]] = mapped_column(JSONType, server_default="[]")
    #: Validate and report what would happen; no object is created or changed.
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())

    status: Mapped[BatchStatus] = mapped_column(_enum(BatchStatus), default=BatchStatus.QUEUED)
    received_count: Mapped[int] = mapped_column(sa.Integer)
    created_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Of ``updated_count``, the records whose values were those stored already.
    unchanged_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    failed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Records whose outcome is known (rejected at validation or in a finished chunk).
    processed_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    error_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    warning_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    chunk_count: Mapped[int] = mapped_column(sa.Integer)
    chunks_finished: Mapped[int] = mapped_column(sa.Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    request_id: Mapped[str | None] = mapped_column(sa.String(64))
    #: When the retention purge deleted the batch's per-record details (its chunks);
    #: the summary (this row) stays until ``IMPORTER_BATCH_RETENTION_DAYS``.
    details_purged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ImportChunk(Base):
    """A contiguous slice ``[start_index, end_index)`` of a batch's records.

    The chunk is the unit of work of the workers and also the outbox row: it is
    committed with the batch, and ``dispatched_at`` records when it was handed to
    the broker. ``payload`` holds the slice's valid records until they are written;
    ``results``, ``errors`` and ``warnings`` hold the slice's outcome, so a batch's
    outcome can be paginated without a row per record.
    """

    __tablename__ = "import_chunks"
    __table_args__ = (
        sa.UniqueConstraint("batch_id", "position"),
        # Live work only (a partial index stays as small as the backlog): the bulk
        # lane's backlog and in-flight chunks per org, in accept order.
        sa.Index(
            "ix_import_chunks_live_org_id",
            "org_id",
            "batch_seq",
            "position",
            postgresql_where=sa.text("status IN ('pending', 'processing')"),
            sqlite_where=sa.text("status IN ('pending', 'processing')"),
        ),
        sa.Index("ix_import_chunks_status_dispatched_at", "status", "dispatched_at"),
        # The ops page's throughput: chunks finished in the last hour.
        sa.Index("ix_import_chunks_finished_at", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigSerial, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(sa.ForeignKey("import_batches.id", ondelete="CASCADE"))
    #: The batch's org and ``seq``, kept on the chunk so the scheduler orders and
    #: counts an org's work without reading the batches.
    org_id: Mapped[str] = mapped_column(sa.String(40))
    batch_seq: Mapped[int] = mapped_column(sa.BigInteger)
    lane: Mapped[Lane] = mapped_column(_enum(Lane), default=Lane.BULK)
    position: Mapped[int] = mapped_column(sa.Integer)
    start_index: Mapped[int] = mapped_column(sa.Integer)
    end_index: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[ChunkStatus] = mapped_column(_enum(ChunkStatus), default=ChunkStatus.PENDING)
    #: Records still to write (or to validate, then write).
    record_count: Mapped[int] = mapped_column(sa.Integer)
    #: ``[[index, record], ...]``: validated values by service field name, or, when
    #: ``validated`` is false, the records as sent (a large batch is validated by the
    #: workers, chunk by chunk, in parallel).
    payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    validated: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    results: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    errors: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    warnings: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Of ``updated_count``, the records whose values were those stored already.
    unchanged_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    #: Records of the slice rejected by validation.
    invalid_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: Records of the slice rejected when written (unknown reference, write failure).
    rejected_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    error_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    warning_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: The worker (Celery node name) that claimed the chunk last.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(255))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def result_count(self) -> int:
        return self.created_count + self.updated_count


class WorkerHeartbeat(Base):
    """A worker node's last sign of life, written by its maintenance timer."""

    __tablename__ = "worker_heartbeats"

    #: Celery node name, e.g. ``celery@web-7f9c``.
    node: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(sa.Integer)
    concurrency: Mapped[int] = mapped_column(sa.Integer)
    #: Of ``concurrency``, the processes the bulk lane may fill (the rest are kept
    #: free for the interactive lane); 0 for a worker that does not consume it.
    bulk_slots: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    queues: Mapped[list[str]] = mapped_column(JSONType)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Set when the worker shut down cleanly.
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SchedulerState(Base):
    """One row: the bulk lane's round-robin clock. Every release pass updates it first,
    so its row lock (PostgreSQL) or the write lock it takes (SQLite) makes the passes
    of all processes run one at a time."""

    __tablename__ = "scheduler_state"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    #: Bulk chunks released so far; an org's turn is the value of its last release.
    turns: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class BulkTurn(Base):
    """An org's place in the bulk lane's round robin: the orgs with waiting work are
    served least recently released first."""

    __tablename__ = "bulk_turns"

    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"), primary_key=True)
    last_turn: Mapped[int] = mapped_column(sa.BigInteger)
    released_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ObjectCount(Base):
    """How many objects of one base object an org has: the exact ``total`` of its list,
    read without counting rows. Objects are only ever added (never deleted), so the
    count only grows: ``importer.listing.count_created`` adds a chunk's created rows in
    the transaction that writes them."""

    __tablename__ = "object_counts"

    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"), primary_key=True)
    base_object: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class PurgeState(Base):
    """One row: when the retention purge (``importer.retention``) may run next. A worker
    claims a run by moving ``next_run_at`` forward with a guarded UPDATE, so the purge
    runs at most once per interval however many workers there are."""

    __tablename__ = "purge_state"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    next_run_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("org_id", "key"),)

    id: Mapped[int] = mapped_column(BigSerial, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"))
    key: Mapped[str] = mapped_column(sa.String(255))
    #: SHA-256 of what makes two requests "the same": slug, query, content type, body.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    batch_id: Mapped[str | None] = mapped_column(sa.String(40))
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    #: Every attempt failed, or the endpoint was disabled before it could be delivered.
    FAILED = "failed"


class WebhookEndpoint(Base):
    """Where an org wants to hear that its batches ended (see ``importer.webhooks``)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        sa.Index("ix_webhook_endpoints_org_id_created_at_id", "org_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"))
    url: Mapped[str] = mapped_column(sa.String(2048))
    #: Event types it is subscribed to (``Import.Completed``, ``Import.Failed``).
    events: Mapped[list[str]] = mapped_column(JSONType)
    #: The HMAC key the deliveries are signed with (kept: every attempt must sign).
    secret: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One event for one endpoint: the outbox row of a webhook, and its attempts.

    Inserted in the transaction that ends the batch; ``body`` holds the exact bytes
    every attempt sends (so every attempt carries the same signature).
    ``dispatched_at`` says when it was last handed to the broker; the relay hands it
    over again when it is due (``next_attempt_at``) and nobody did.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index(
            "ix_webhook_deliveries_endpoint_id_created_at_id", "endpoint_id", "created_at", "id"
        ),
        sa.Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        # Deliveries past their retention (importer.retention).
        sa.Index("ix_webhook_deliveries_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_endpoints.id"))
    org_id: Mapped[str] = mapped_column(sa.ForeignKey("orgs.id"))
    #: The batch whose end is the event (no foreign key: the delivery outlives nothing).
    batch_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    event_id: Mapped[str] = mapped_column(sa.String(40))
    event_type: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempt_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: When it is due; null once delivered or failed.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: Every attempt, oldest first: ``{"at", "status_code", "error", "duration_ms"}``.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


# --- base objects, generated from the catalog -------------------------------------


def column_type(spec: FieldSpec) -> sa.types.TypeEngine[Any]:
    match spec.kind:
        case Kind.NUMBER:
            return sa.Float()
        case Kind.BOOLEAN:
            return sa.Boolean()
        case Kind.DATE:
            return sa.Date()
        case Kind.STRING_LIST:
            return JSONType
        case _:
            return sa.String(spec.max_length) if spec.max_length <= 2048 else sa.Text()


#: The object tables take upserts without end, every one leaving a dead row version.
#: PostgreSQL's defaults vacuum a table once 20 % of it is dead (200,000 dead rows at
#: 1 M objects, 1 M at 5 M), so its indexes bloat as it grows; these vacuum it after
#: 2 % plus 10,000 rows (and after 5 % of new rows, which keeps the visibility map
#: current for index-only counts). Measured by bench/growth.py (docs/benchmarks.md).
OBJECT_TABLE_AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.02",
}


def _object_table(base: BaseObject) -> sa.Table:
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("org_id", sa.ForeignKey("orgs.id"), nullable=False),
    ]
    for spec in base.fields:
        columns.append(sa.Column(spec.name, column_type(spec), nullable=not spec.required))
        if spec.references:
            target = catalog.CATALOG[spec.references]
            columns.append(
                sa.Column(spec.reference_column, sa.ForeignKey(f"{target.plural}.id"), index=True)
            )
    columns += [
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        # Later wins: the seq of the batch that created the row, and of the last
        # batch whose values the row holds.
        sa.Column("created_seq", sa.BigInteger, nullable=False),
        sa.Column("written_seq", sa.BigInteger, nullable=False),
        # The digest of the record as sent (and of what validated it) whose values the
        # row holds, when the last write came from such a record: a re-sent identical
        # record is known unchanged without being validated again (importer.sources).
        sa.Column("source_digest", sa.String(32)),
    ]
    return sa.Table(
        base.plural,
        Base.metadata,
        *columns,
        sa.UniqueConstraint("org_id", "external_id"),
        # The two list orders: oldest first, and changed since (the incremental sync).
        sa.Index(f"ix_{base.plural}_org_id_created_at_id", "org_id", "created_at", "id"),
        sa.Index(f"ix_{base.plural}_org_id_updated_at_id", "org_id", "updated_at", "id"),
        postgresql_with=OBJECT_TABLE_AUTOVACUUM,
    )


OBJECT_TABLES: dict[str, sa.Table] = {
    name: _object_table(base) for name, base in catalog.CATALOG.items()
}
