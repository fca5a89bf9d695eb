"""Item categories: ``items.categories``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

A posted item may carry categories (labels); recommendations and neighbours can be
restricted to one (``?category=``). Items stored before have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("categories", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("categories")
