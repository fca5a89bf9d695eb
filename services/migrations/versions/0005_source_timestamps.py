"""When things happened at the source: ``items.published_at``, ``interactions.occurred_at``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

An import may carry each row's own time (when the item was published, when the user
interacted). ``created_at`` stays the time the store recorded the row, which is what a
refresh reads to tell new interactions from trained ones; the source's time is kept beside
it, None where none was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.add_column("items", sa.Column("published_at", utc, nullable=True))
    op.add_column("interactions", sa.Column("occurred_at", utc, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("occurred_at")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("published_at")
