"""Why a simulated user was kept: ``interactions.evidence``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A warm-up records, with each simulated interaction, the values the refiner read for that
user (each filter signal, history length, merged score, the LM's P(Yes) where asked), so
the dashboard can show why the simulation picked them. Rows written before have none.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("interactions", sa.Column("evidence", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("evidence")
