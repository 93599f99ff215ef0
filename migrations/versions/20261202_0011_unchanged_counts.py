"""batches and chunks: how many updated records changed nothing

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("import_batches", "import_chunks"):
        op.add_column(
            table,
            sa.Column("unchanged_count", sa.Integer(), server_default="0", nullable=False),
        )


def downgrade() -> None:
    for table in ("import_batches", "import_chunks"):
        op.drop_column(table, "unchanged_count")
