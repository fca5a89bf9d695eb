"""The first tables: items, users, interactions, jobs, model versions.

Revision ID: 0001
Revises:
Create Date: 2026-12-06

Databases made before the store had migrations hold exactly this schema;
:meth:`services.store.Store.migrate` stamps them with this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def choice(*values: str) -> sa.Enum:
    return sa.Enum(*values, native_enum=False, create_constraint=True)


def utc(nullable: bool) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("index", sa.Integer(), nullable=True),
        sa.Column("origin", choice("dataset", "api"), nullable=False),
        sa.Column(
            "status", choice("queued", "warming", "warm", "degraded", "failed"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        sa.Column("updated_at", **utc(nullable=False)),
        sa.Column("warmed_at", **utc(nullable=True)),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("index"),
    )
    op.create_index("ix_items_status", "items", ["status"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", choice("warm_up", "refresh"), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=True),
        sa.Column("status", choice("queued", "running", "succeeded", "failed"), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        sa.Column("started_at", **utc(nullable=True)),
        sa.Column("finished_at", **utc(nullable=True)),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_jobs_item_id", "jobs", ["item_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("created_at", **utc(nullable=False)),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("index"),
    )
    op.create_table(
        "interactions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("item_id", sa.String(length=128), nullable=False),
        sa.Column("kind", choice("real", "simulated"), nullable=False),
        sa.Column("p_yes", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("created_at", **utc(nullable=False)),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "item_id", "kind", name="one_interaction_per_kind"),
    )
    op.create_index("interactions_by_item", "interactions", ["item_id"])


def downgrade() -> None:
    for table in ("interactions", "users", "model_versions", "jobs", "items"):
        op.drop_table(table)
