"""The relational store: items, users, interactions (real and simulated), jobs, model versions.

SQLAlchemy 2 over SQLite (the embedded default) or PostgreSQL (compose). Every method is
one transaction and returns plain frozen records, so callers never hold a session. What a
user sends is committed before the API answers: an item and its warm-up job are written
together, so a crash after the 202 loses nothing (``pending_items`` finds it again).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

#: Rows per INSERT batch when loading a data set.
CHUNK = 5000


def now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    index: Mapped[int | None] = mapped_column(Integer, unique=True)
    origin: Mapped[str] = mapped_column(String(16))  # dataset | api
    status: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(String(64))
    timings: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)
    warmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, unique=True)


class Interaction(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("user_id", "item_id", "kind", name="one_interaction_per_kind"),
        Index("interactions_by_item", "item_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    kind: Mapped[str] = mapped_column(String(16))  # real | simulated
    p_yes: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # warm_up | refresh
    item_id: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(16))
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


@dataclass(frozen=True)
class ItemRecord:
    id: str
    text: str
    index: int | None
    origin: str
    status: str
    error: str | None
    model_version: str | None
    timings: dict | None
    created_at: datetime
    warmed_at: datetime | None


@dataclass(frozen=True)
class JobRecord:
    id: str
    kind: str
    item_id: str | None
    status: str
    attempts: int
    error: str | None
    result: dict | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class VersionRecord:
    id: str
    path: str
    created_at: datetime
    metrics: dict | None
    active: bool


class StoreError(Exception):
    """A request the store refuses; the message says why, for the API's 4xx."""


class ItemConflict(StoreError):
    pass


class UnknownIds(StoreError):
    pass


def _record(cls, row):
    return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Store:
    """The service's relational store at a SQLAlchemy ``url``."""

    def __init__(self, url: str) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        options = {"connect_args": {"check_same_thread": False}} if self.is_sqlite else {}
        self.engine = create_engine(url, pool_pre_ping=True, **options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    # -- items and jobs ---------------------------------------------------------------

    def submit_item(self, item_id: str, text: str) -> tuple[ItemRecord, JobRecord, bool]:
        """Store a posted item and its warm-up job; idempotent on the id.

        Returns (item, job, created). The same text again returns the existing item and
        its latest job; another text raises :class:`ItemConflict`.
        """
        digest = content_hash(text)
        try:
            with self.session() as session:
                existing = session.get(Item, item_id)
                if existing is None:
                    item = Item(
                        id=item_id, text=text, content_hash=digest, origin="api", status="queued"
                    )
                    job = Job(id=uuid.uuid4().hex, kind="warm_up", item_id=item_id, status="queued")
                    session.add_all([item, job])
                    session.flush()
                    return _record(ItemRecord, item), _record(JobRecord, job), True
        except IntegrityError:
            pass  # another request stored the same id first: answer as for a repeat
        with self.session() as session:
            existing = session.get(Item, item_id)
            if existing.content_hash != digest:
                raise ItemConflict(
                    f"item {item_id!r} exists with different content; post it under a new id"
                )
            job = self._latest_job(session, item_id)
            if job is None:  # a data-set item: no warm-up was ever needed
                job = Job(id=uuid.uuid4().hex, kind="warm_up", item_id=item_id, status="succeeded")
                session.add(job)
                session.flush()
            return _record(ItemRecord, existing), _record(JobRecord, job), False

    def get_item(self, item_id: str) -> ItemRecord | None:
        with self.session() as session:
            item = session.get(Item, item_id)
            return None if item is None else _record(ItemRecord, item)

    def set_item_status(
        self,
        item_id: str,
        status: str,
        *,
        error: str | None = None,
        model_version: str | None = None,
        timings: dict | None = None,
        index: int | None = None,
    ) -> None:
        values: dict = {"status": status, "error": error, "updated_at": now()}
        if model_version is not None:
            values["model_version"] = model_version
        if timings is not None:
            values["timings"] = timings
        if index is not None:
            values["index"] = index
        if status == "warm":
            values["warmed_at"] = now()
        with self.session() as session:
            session.execute(update(Item).where(Item.id == item_id).values(**values))

    def assign_index(self, item_id: str, attempts: int = 20) -> int:
        """Give the item the next free row index (once); safe under concurrent workers."""
        for _ in range(attempts):
            try:
                with self.session() as session:
                    item = session.get(Item, item_id)
                    if item.index is not None:
                        return item.index
                    item.index = self._next_index(session)
                    session.flush()
                    return item.index
            except IntegrityError:
                continue  # another item took that index at the same moment
        raise StoreError(f"could not assign an index to item {item_id!r}")

    def pending_items(self) -> list[str]:
        """Posted items not warm yet: what a starting process enqueues again."""
        with self.session() as session:
            rows = session.scalars(
                select(Item.id)
                .where(Item.status.in_(("queued", "warming", "degraded")))
                .order_by(Item.created_at)
            )
            return list(rows)

    def item_ids(self, indices: Sequence[int]) -> dict[int, str]:
        """Item id of each known row index."""
        if not len(indices):
            return {}
        with self.session() as session:
            rows = session.execute(
                select(Item.index, Item.id).where(Item.index.in_([int(i) for i in indices]))
            )
            return _as_dict(rows)

    def indexed_items(self) -> dict[int, tuple[str, str]]:
        """Every item with a row index: index -> (id, origin)."""
        with self.session() as session:
            rows = session.execute(
                select(Item.index, Item.id, Item.origin).where(Item.index.is_not(None))
            )
            return {index: (item_id, origin) for index, item_id, origin in rows}

    def create_job(self, kind: str, item_id: str | None = None) -> JobRecord:
        with self.session() as session:
            job = Job(id=uuid.uuid4().hex, kind=kind, item_id=item_id, status="queued")
            session.add(job)
            session.flush()
            return _record(JobRecord, job)

    def get_job(self, job_id: str) -> JobRecord | None:
        with self.session() as session:
            job = session.get(Job, job_id)
            return None if job is None else _record(JobRecord, job)

    def latest_job(self, item_id: str) -> JobRecord | None:
        with self.session() as session:
            job = self._latest_job(session, item_id)
            return None if job is None else _record(JobRecord, job)

    def start_job(self, job_id: str) -> None:
        with self.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="running", attempts=Job.attempts + 1, started_at=now())
            )

    def finish_job(
        self, job_id: str, status: str, result: dict | None = None, error: str | None = None
    ) -> None:
        with self.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status, result=result, error=error, finished_at=now())
            )

    # -- users and interactions -------------------------------------------------------

    def user_index(self, user_id: str) -> int | None:
        with self.session() as session:
            return session.scalar(select(User.index).where(User.id == user_id))

    def add_interactions(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Real (user, item) interactions; repeats are no-ops. Returns how many were new.

        All or nothing: unknown user or item ids raise :class:`UnknownIds` and nothing is
        written.
        """
        users = {u for u, _ in pairs}
        items = {i for _, i in pairs}
        with self.session() as session:
            known_users = set(session.scalars(select(User.id).where(User.id.in_(users))))
            known_items = set(session.scalars(select(Item.id).where(Item.id.in_(items))))
            missing = sorted(users - known_users)
            missing_items = sorted(items - known_items)
            if missing or missing_items:
                raise UnknownIds(
                    "unknown "
                    + "; ".join(
                        f"{what} ids: {', '.join(ids[:20])}"
                        for what, ids in (("user", missing), ("item", missing_items))
                        if ids
                    )
                )
            unique = list(dict.fromkeys(pairs))
            already = session.scalar(
                select(func.count())
                .select_from(Interaction)
                .where(
                    Interaction.kind == "real",
                    tuple_(Interaction.user_id, Interaction.item_id).in_(unique),
                )
            )
            rows = [{"user_id": u, "item_id": i, "kind": "real"} for u, i in unique]
            self._insert_ignoring_repeats(session, Interaction, rows)
            return len(unique) - already

    def replace_simulated(
        self, item_id: str, users_with_p: Sequence[tuple[str, float]], model_version: str
    ) -> int:
        """The item's simulated interactions, replaced as a whole (redelivery-safe)."""
        with self.session() as session:
            session.execute(
                delete(Interaction).where(
                    Interaction.item_id == item_id, Interaction.kind == "simulated"
                )
            )
            session.add_all(
                Interaction(
                    user_id=user,
                    item_id=item_id,
                    kind="simulated",
                    p_yes=p,
                    model_version=model_version,
                )
                for user, p in users_with_p
            )
        return len(users_with_p)

    def simulated_for(self, item_id: str) -> list[tuple[str, float]]:
        with self.session() as session:
            rows = session.execute(
                select(Interaction.user_id, Interaction.p_yes)
                .where(Interaction.item_id == item_id, Interaction.kind == "simulated")
                .order_by(Interaction.p_yes.desc(), Interaction.user_id)
            )
            return [(user, p) for user, p in rows]

    def seen_item_indices(self, user_id: str) -> list[int]:
        """Row indices of the items the user really interacted with."""
        with self.session() as session:
            rows = session.scalars(
                select(Item.index)
                .join(Interaction, Interaction.item_id == Item.id)
                .where(
                    Interaction.user_id == user_id,
                    Interaction.kind == "real",
                    Item.index.is_not(None),
                )
            )
            return list(rows)

    def real_interaction_indices(self, since: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Real (user, item) index pairs: those recorded before ``since``, and after."""
        with self.session() as session:
            rows = session.execute(
                select(User.index, Item.index, Interaction.created_at)
                .select_from(Interaction)
                .join(User, User.id == Interaction.user_id)
                .join(Item, Item.id == Interaction.item_id)
                .where(Interaction.kind == "real", Item.index.is_not(None))
            ).all()
        old = [(u, i) for u, i, at in rows if at < since]
        new = [(u, i) for u, i, at in rows if at >= since]
        return _pairs(old), _pairs(new)

    def simulated_interaction_indices(self) -> np.ndarray:
        with self.session() as session:
            rows = session.execute(
                select(User.index, Item.index)
                .select_from(Interaction)
                .join(User, User.id == Interaction.user_id)
                .join(Item, Item.id == Interaction.item_id)
                .where(Interaction.kind == "simulated", Item.index.is_not(None))
            ).all()
        return _pairs(rows)

    def counts(self) -> dict:
        with self.session() as session:
            by_status = select(Item.status, func.count()).group_by(Item.status)
            by_kind = select(Interaction.kind, func.count()).group_by(Interaction.kind)
            items = _as_dict(session.execute(by_status))
            interactions = _as_dict(session.execute(by_kind))
            users = session.scalar(select(func.count()).select_from(User))
        return {"items": items, "users": users, "interactions": interactions}

    # -- bulk loading (bootstrap) -----------------------------------------------------

    def load_users(self, ids_with_index: Sequence[tuple[str, int]]) -> None:
        rows = [{"id": user, "index": int(index)} for user, index in ids_with_index]
        self._bulk_insert(User, rows)

    def load_items(self, rows: Sequence[tuple[str, str, int, str]]) -> None:
        """(id, text, index, status) of data-set items."""
        stamp = now()
        self._bulk_insert(
            Item,
            [
                {
                    "id": item_id,
                    "text": text,
                    "content_hash": content_hash(text),
                    "index": int(index),
                    "origin": "dataset",
                    "status": status,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for item_id, text, index, status in rows
            ],
        )

    def load_interactions(self, pairs: Sequence[tuple[str, str]], kind: str = "real") -> None:
        stamp = now()
        rows = [
            {"user_id": u, "item_id": i, "kind": kind, "created_at": stamp}
            for u, i in dict.fromkeys(pairs)
        ]
        self._bulk_insert(Interaction, rows)

    # -- model versions ---------------------------------------------------------------

    def register_version(self, version: str, path: str, metrics: dict | None = None) -> None:
        with self.session() as session:
            session.add(ModelVersion(id=version, path=path, metrics=metrics))

    def activate(self, version: str) -> None:
        """Exactly one active version afterwards (one transaction)."""
        with self.session() as session:
            if session.get(ModelVersion, version) is None:
                raise StoreError(f"model version {version!r} is not registered")
            session.execute(update(ModelVersion).values(active=ModelVersion.id == version))

    def active_version(self) -> VersionRecord | None:
        with self.session() as session:
            row = session.scalar(select(ModelVersion).where(ModelVersion.active))
            return None if row is None else _record(VersionRecord, row)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _latest_job(session: Session, item_id: str) -> Job | None:
        return session.scalar(
            select(Job).where(Job.item_id == item_id).order_by(Job.created_at.desc()).limit(1)
        )

    @staticmethod
    def _next_index(session: Session) -> int:
        highest = session.scalar(select(func.max(Item.index)))
        return 0 if highest is None else highest + 1

    def _bulk_insert(self, table, rows: list[dict]) -> None:
        with self.session() as session:
            for start in range(0, len(rows), CHUNK):
                session.execute(table.__table__.insert(), rows[start : start + CHUNK])

    def _insert_ignoring_repeats(self, session: Session, table, rows: list[dict]) -> None:
        """INSERT ... ON CONFLICT DO NOTHING, in the dialect of the store."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = dialect.insert(table.__table__).on_conflict_do_nothing()
        for start in range(0, len(rows), CHUNK):
            session.execute(statement, rows[start : start + CHUNK])


def _as_dict(rows) -> dict:
    return {key: value for key, value in rows}


def _pairs(rows) -> np.ndarray:
    return np.array([tuple(row) for row in rows], dtype=np.int64).reshape(-1, 2)


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers run beside the writer; SQLite checks foreign keys only when asked."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
