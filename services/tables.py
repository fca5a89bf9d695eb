"""The relational store's tables (SQLAlchemy 2 declarative models) and their value sets.

The schema changes only through Alembic migrations (``services/migrations``), which are
checked against these models by the tests; :class:`services.store.Store` is the one
module that reads and writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ItemStatus = Literal["queued", "warming", "warm", "degraded", "failed"]
ItemOrigin = Literal["dataset", "api"]
InteractionKind = Literal["real", "simulated"]
JobKind = Literal["warm_up", "refresh", "train"]
JobStatus = Literal["queued", "running", "succeeded", "failed"]


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite keeps no offset and PostgreSQL answers in the session's time zone; both are
    normalised here, so comparisons in Python never mix naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC times")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def choice(values: Any) -> Enum:
    """A string column limited to a Literal's values, checked in Python and by the database."""
    return Enum(*get_args(values), native_enum=False, create_constraint=True, validate_strings=True)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    #: Labels a recommendation can be restricted to (``?category=``); None: none.
    categories: Mapped[list | None] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    index: Mapped[int | None] = mapped_column(Integer, unique=True)
    origin: Mapped[str] = mapped_column(choice(ItemOrigin))
    status: Mapped[str] = mapped_column(choice(ItemStatus), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    #: When the item was published, as its import said (None: not given). ``created_at`` is
    #: when the store recorded it.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)
    warmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When it was withdrawn (DELETE): out of the index and every recommendation, the row
    #: kept for audit.
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: The row in the model version's tables; None for a user the model has not seen yet.
    index: Mapped[int | None] = mapped_column(Integer, unique=True)


class Interaction(Base):
    """One (user, item) pair per kind.

    The unique (user_id, item_id, kind) index makes repeats no-ops and, as its leading
    column is user_id, also serves the per-user look-ups; only item_id needs its own index.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("user_id", "item_id", "kind", name="one_interaction_per_kind"),
        Index("interactions_by_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    kind: Mapped[str] = mapped_column(choice(InteractionKind))
    p_yes: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(64))
    #: A simulated interaction's why: what the refiner read for the user (signal name to
    #: value, :attr:`models.llmins.online.WarmedItems.evidence`); None for real ones.
    evidence: Mapped[dict | None] = mapped_column(JSON)
    #: When it was recorded here: a refresh trains what was recorded since the last one.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    #: When the user interacted, as the source said (an import's timestamp; None: not given).
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(choice(JobKind))
    item_id: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(choice(JobStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    metrics: Mapped[dict | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
