"""batch snapshot of required, dry runs, chunks validated by workers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 17:18:46.790110
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "import_batches",
        sa.Column(
            "required",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            server_default="[]",
            nullable=False,
        ),
    )
    op.add_column(
        "import_batches",
        sa.Column("dry_run", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "import_chunks",
        sa.Column("validated", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("import_chunks", "validated")
    op.drop_column("import_batches", "dry_run")
    op.drop_column("import_batches", "required")
