"""objects: the digest of the record as sent whose values the row holds

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The object tables of 0001 (one per base object of the catalog).
TABLES = ("vendors", "services", "assessments")


def upgrade() -> None:
    # Nullable, no default: PostgreSQL adds the column without rewriting the table,
    # and a row without a digest is simply compared value by value, as before.
    for table in TABLES:
        op.add_column(table, sa.Column("source_digest", sa.String(32), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "source_digest")
