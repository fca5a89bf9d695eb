"""Train jobs: ``jobs.kind`` may be ``train``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A model version trained from the store's own items and interactions (``POST
/v1/admin/train``) runs as a job like a refresh. The kind column is a string limited by a
CHECK constraint: SQLite rebuilds the table with the new one, PostgreSQL swaps the
constraint.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("warm_up", "refresh")
AFTER = ("warm_up", "refresh", "train")
#: The job statuses, unchanged: SQLite's rebuilt table gets their CHECK again.
STATUSES = ("queued", "running", "succeeded", "failed")


def kinds(values: Sequence[str]) -> sa.Enum:
    return sa.Enum(*values, native_enum=False, create_constraint=True)


def allow(old: Sequence[str], new: Sequence[str]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # The rebuild drops the table's unnamed CHECK constraints (alembic warns so); both
        # come back from the columns' types, given here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unnamed CHECK constraint", UserWarning)
            with op.batch_alter_table("jobs", recreate="always") as batch:
                batch.alter_column(
                    "kind", existing_type=kinds(old), type_=kinds(new), existing_nullable=False
                )
                batch.alter_column(
                    "status",
                    existing_type=kinds(STATUSES),
                    type_=kinds(STATUSES),
                    existing_nullable=False,
                )
        return
    for check in sa.inspect(bind).get_check_constraints("jobs"):
        if "kind" in check["sqltext"]:
            op.drop_constraint(check["name"], "jobs", type_="check")
    op.create_check_constraint("jobs_kind_check", "jobs", sa.column("kind").in_(new))


def upgrade() -> None:
    allow(BEFORE, AFTER)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM jobs WHERE kind = 'train'"))
    allow(AFTER, BEFORE)
