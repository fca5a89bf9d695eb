"""Withdrawn items: ``items.withdrawn_at``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

An item withdrawn through ``DELETE /v1/items/{id}`` leaves the vector index and every
recommendation at once; its row, text and interactions stay for audit.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("withdrawn_at")
