"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 16:51:12.412333
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column(
            "vendor_statuses",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orgs")),
    )
    op.create_table(
        "api_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_api_keys_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_org_id"), "api_keys", ["org_id"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_idempotency_keys_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint("org_id", "key", name=op.f("uq_idempotency_keys_org_id_key")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )
    op.create_table(
        "import_reports",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("report_name", sa.String(length=255), nullable=False),
        sa.Column("base_object", sa.String(length=40), nullable=False),
        sa.Column(
            "mapping",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "required",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_import_reports_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_reports")),
    )
    op.create_index(op.f("ix_import_reports_org_id"), "import_reports", ["org_id"], unique=False)
    op.create_index(
        "uq_import_reports_org_id_slug_live",
        "import_reports",
        ["org_id", "slug"],
        unique=True,
        postgresql_where=sa.text("archived_at IS NULL"),
        sqlite_where=sa.text("archived_at IS NULL"),
    )
    op.create_table(
        "vendors",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("website", sa.String(length=2048), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("hq_location", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=255), nullable=True),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("engagement_type", sa.String(length=255), nullable=True),
        sa.Column("use_case", sa.String(length=255), nullable=True),
        sa.Column("business_unit", sa.String(length=255), nullable=True),
        sa.Column("enterprise", sa.Boolean(), nullable=True),
        sa.Column("category", sa.String(length=255), nullable=True),
        sa.Column("raw_irq_score", sa.Float(), nullable=True),
        sa.Column("raw_residual_risk_score", sa.Float(), nullable=True),
        sa.Column("next_assessment_date", sa.Date(), nullable=True),
        sa.Column("contract_end_date", sa.Date(), nullable=True),
        sa.Column("primary_contact_email", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("written_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_vendors_org_id_orgs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendors")),
        sa.UniqueConstraint("org_id", "external_id", name=op.f("uq_vendors_org_id_external_id")),
    )
    op.create_index(
        "ix_vendors_org_id_updated_at", "vendors", ["org_id", "updated_at"], unique=False
    )
    op.create_table(
        "assessments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("vendor_external_id", sa.String(length=255), nullable=False),
        sa.Column("vendor_id", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("assessment_type", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=255), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("assessor", sa.String(length=255), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("score_percent", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("written_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_assessments_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_assessments_vendor_id_vendors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessments")),
        sa.UniqueConstraint(
            "org_id", "external_id", name=op.f("uq_assessments_org_id_external_id")
        ),
    )
    op.create_index(
        "ix_assessments_org_id_updated_at", "assessments", ["org_id", "updated_at"], unique=False
    )
    op.create_index(op.f("ix_assessments_vendor_id"), "assessments", ["vendor_id"], unique=False)
    op.create_table(
        "import_batches",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("report_id", sa.String(length=40), nullable=False),
        sa.Column("report_version", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("report_name", sa.String(length=255), nullable=False),
        sa.Column("base_object", sa.String(length=40), nullable=False),
        sa.Column(
            "mapping",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "processing",
                "completed",
                "failed",
                name="batchstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("received_count", sa.Integer(), nullable=False),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("updated_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("processed_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("chunks_finished", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_import_batches_org_id_orgs")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["import_reports.id"],
            name=op.f("fk_import_batches_report_id_import_reports"),
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_import_batches")),
        sa.UniqueConstraint("id", name=op.f("uq_import_batches_id")),
    )
    op.create_index(
        "ix_import_batches_org_id_seq", "import_batches", ["org_id", "seq"], unique=False
    )
    op.create_index(
        op.f("ix_import_batches_report_id"), "import_batches", ["report_id"], unique=False
    )
    op.create_index(
        "ix_import_batches_status_received_at",
        "import_batches",
        ["status", "received_at"],
        unique=False,
    )
    op.create_table(
        "services",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("vendor_external_id", sa.String(length=255), nullable=False),
        sa.Column("vendor_id", sa.String(length=40), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "data_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("hosting_model", sa.String(length=255), nullable=True),
        sa.Column("criticality_tier", sa.String(length=255), nullable=True),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_seq", sa.BigInteger(), nullable=False),
        sa.Column("written_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_services_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["vendors.id"], name=op.f("fk_services_vendor_id_vendors")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("org_id", "external_id", name=op.f("uq_services_org_id_external_id")),
    )
    op.create_index(
        "ix_services_org_id_updated_at", "services", ["org_id", "updated_at"], unique=False
    )
    op.create_index(op.f("ix_services_vendor_id"), "services", ["vendor_id"], unique=False)
    op.create_table(
        "import_chunks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("start_index", sa.Integer(), nullable=False),
        sa.Column("end_index", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "processing",
                "done",
                "failed",
                name="chunkstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("results", sa.LargeBinary(), nullable=True),
        sa.Column("errors", sa.LargeBinary(), nullable=True),
        sa.Column("warnings", sa.LargeBinary(), nullable=True),
        sa.Column("created_count", sa.Integer(), nullable=False),
        sa.Column("updated_count", sa.Integer(), nullable=False),
        sa.Column("invalid_count", sa.Integer(), nullable=False),
        sa.Column("rejected_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["import_batches.id"],
            name=op.f("fk_import_chunks_batch_id_import_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_chunks")),
        sa.UniqueConstraint(
            "batch_id", "position", name=op.f("uq_import_chunks_batch_id_position")
        ),
    )
    op.create_index(
        "ix_import_chunks_status_dispatched_at",
        "import_chunks",
        ["status", "dispatched_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_import_chunks_status_dispatched_at", table_name="import_chunks")
    op.drop_table("import_chunks")
    op.drop_index(op.f("ix_services_vendor_id"), table_name="services")
    op.drop_index("ix_services_org_id_updated_at", table_name="services")
    op.drop_table("services")
    op.drop_index("ix_import_batches_status_received_at", table_name="import_batches")
    op.drop_index(op.f("ix_import_batches_report_id"), table_name="import_batches")
    op.drop_index("ix_import_batches_org_id_seq", table_name="import_batches")
    op.drop_table("import_batches")
    op.drop_index(op.f("ix_assessments_vendor_id"), table_name="assessments")
    op.drop_index("ix_assessments_org_id_updated_at", table_name="assessments")
    op.drop_table("assessments")
    op.drop_index("ix_vendors_org_id_updated_at", table_name="vendors")
    op.drop_table("vendors")
    op.drop_index(
        "uq_import_reports_org_id_slug_live",
        table_name="import_reports",
        postgresql_where=sa.text("archived_at IS NULL"),
        sqlite_where=sa.text("archived_at IS NULL"),
    )
    op.drop_index(op.f("ix_import_reports_org_id"), table_name="import_reports")
    op.drop_table("import_reports")
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(op.f("ix_api_keys_org_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("orgs")
