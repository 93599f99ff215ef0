"""lanes and the bulk lane's scheduler: chunk org, batch seq and lane; round-robin turns

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 08:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "status IN ('pending', 'processing')"


def upgrade() -> None:
    with op.batch_alter_table("import_chunks") as batch:
        batch.add_column(sa.Column("org_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("batch_seq", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("lane", sa.String(length=20), nullable=False, server_default="bulk")
        )
    # Chunks accepted before this revision: their batch's org and seq.
    op.execute(
        "UPDATE import_chunks SET "
        "org_id = (SELECT org_id FROM import_batches WHERE import_batches.id = batch_id), "
        "batch_seq = (SELECT seq FROM import_batches WHERE import_batches.id = batch_id)"
    )
    with op.batch_alter_table("import_chunks") as batch:
        batch.alter_column("org_id", existing_type=sa.String(length=40), nullable=False)
        batch.alter_column("batch_seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("lane", existing_type=sa.String(length=20), server_default=None)
    op.create_index(
        "ix_import_chunks_live_org_id",
        "import_chunks",
        ["org_id", "batch_seq", "position"],
        unique=False,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )
    op.add_column(
        "worker_heartbeats",
        sa.Column("bulk_slots", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "scheduler_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("turns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduler_state")),
    )
    op.execute("INSERT INTO scheduler_state (id, turns) VALUES (1, 0)")
    op.create_table(
        "bulk_turns",
        sa.Column("org_id", sa.String(length=40), nullable=False),
        sa.Column("last_turn", sa.BigInteger(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name=op.f("fk_bulk_turns_org_id_orgs")),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_bulk_turns")),
    )


def downgrade() -> None:
    op.drop_table("bulk_turns")
    op.drop_table("scheduler_state")
    op.drop_column("worker_heartbeats", "bulk_slots")
    op.drop_index("ix_import_chunks_live_org_id", table_name="import_chunks")
    with op.batch_alter_table("import_chunks") as batch:
        batch.drop_column("lane")
        batch.drop_column("batch_seq")
        batch.drop_column("org_id")
