"""lists served by indexes, maintained object counts, retention, object-table autovacuum

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03 09:00:00.000000

Builds two indexes on each object table (a few seconds per million objects, during
which the table takes no writes: run it with the workers stopped) and counts each
org's objects once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OBJECT_TABLES = {"vendors": "vendor", "services": "service", "assessments": "assessment"}
DETAILS_KEPT = "details_purged_at IS NULL AND completed_at IS NOT NULL"
#: Same values as importer.models.OBJECT_TABLE_AUTOVACUUM (a migration imports no app code).
AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_vacuum_threshold": "10000",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_analyze_scale_factor": "0.02",
}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in OBJECT_TABLES:
        op.create_index(
            f"ix_{table}_org_id_created_at_id", table, ["org_id", "created_at", "id"], unique=False
        )
        op.create_index(
            f"ix_{table}_org_id_updated_at_id", table, ["org_id", "updated_at", "id"], unique=False
        )
        op.drop_index(f"ix_{table}_org_id_updated_at", table_name=table)
        if postgresql:
            options = ", ".join(f"{name} = {value}" for name, value in AUTOVACUUM.items())
            op.execute(f"ALTER TABLE {table} SET ({options})")

    op.create_table(
        "object_counts",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("base_object", sa.String(length=40), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_object_counts_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", "base_object", name=op.f("pk_object_counts")),
    )
    for table, base_object in OBJECT_TABLES.items():
        op.execute(
            f"INSERT INTO object_counts (org_id, base_object, count) "
            f"SELECT org_id, '{base_object}', count(*) FROM {table} GROUP BY org_id"
        )

    purge_state = op.create_table(
        "purge_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purge_state")),
    )
    op.bulk_insert(purge_state, [{"id": 1, "next_run_at": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}])

    op.add_column(
        "import_batches", sa.Column("details_purged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_import_batches_org_id_status_seq",
        "import_batches",
        ["org_id", "status", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_import_batches_org_id_slug_seq",
        "import_batches",
        ["org_id", "slug", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_import_batches_completed_at", "import_batches", ["completed_at"], unique=False
    )
    op.create_index(
        "ix_import_batches_details_kept",
        "import_batches",
        ["completed_at"],
        unique=False,
        postgresql_where=sa.text(DETAILS_KEPT),
        sqlite_where=sa.text(DETAILS_KEPT),
    )

    op.create_index(
        "ix_webhook_endpoints_org_id_created_at_id",
        "webhook_endpoints",
        ["org_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_webhook_endpoints_org_id_created_at", table_name="webhook_endpoints")
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_created_at_id",
        "webhook_deliveries",
        ["endpoint_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_webhook_deliveries_endpoint_id_created_at", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_created_at", "webhook_deliveries", ["created_at"], unique=False
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_webhook_deliveries_created_at", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_created_at",
        "webhook_deliveries",
        ["endpoint_id", "created_at"],
        unique=False,
    )
    op.drop_index(
        "ix_webhook_deliveries_endpoint_id_created_at_id", table_name="webhook_deliveries"
    )
    op.create_index(
        "ix_webhook_endpoints_org_id_created_at",
        "webhook_endpoints",
        ["org_id", "created_at"],
        unique=False,
    )
    op.drop_index("ix_webhook_endpoints_org_id_created_at_id", table_name="webhook_endpoints")
    op.drop_index("ix_import_batches_details_kept", table_name="import_batches")
    op.drop_index("ix_import_batches_completed_at", table_name="import_batches")
    op.drop_index("ix_import_batches_org_id_slug_seq", table_name="import_batches")
    op.drop_index("ix_import_batches_org_id_status_seq", table_name="import_batches")
    with op.batch_alter_table("import_batches") as batch:
        batch.drop_column("details_purged_at")
    op.drop_table("purge_state")
    op.drop_table("object_counts")
    for table in OBJECT_TABLES:
        if postgresql:
            options = ", ".join(AUTOVACUUM)
            op.execute(f"ALTER TABLE {table} RESET ({options})")
        op.create_index(
            f"ix_{table}_org_id_updated_at", table, ["org_id", "updated_at"], unique=False
        )
        op.drop_index(f"ix_{table}_org_id_updated_at_id", table_name=table)
        op.drop_index(f"ix_{table}_org_id_created_at_id", table_name=table)
