"""index of chunks by finished_at (the ops page's throughput over the last hour)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_import_chunks_finished_at", "import_chunks", ["finished_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_import_chunks_finished_at", table_name="import_chunks")
