"""Users outside the model: a user first seen in an interaction has no row index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

``users.index`` is the user's row in the model version's tables. Users the version was
trained on have one; a user whose first interaction arrives through the API has none
until a version is trained with them, and is served a vector folded in from the items
they interacted with meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.alter_column("index", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    """Users outside the model, and their interactions, are deleted: 0001 cannot hold them."""
    outside = 'SELECT id FROM users WHERE "index" IS NULL'
    op.execute(sa.text(f"DELETE FROM interactions WHERE user_id IN ({outside})"))
    op.execute(sa.text(f"DELETE FROM users WHERE id IN ({outside})"))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("index", existing_type=sa.Integer(), nullable=False)
