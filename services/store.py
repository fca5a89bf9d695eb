"""The relational store: items, users, interactions (real and simulated), jobs, model versions.

SQLAlchemy 2 over SQLite (the embedded default) or PostgreSQL (compose). Every method is
one transaction and returns plain frozen records, so callers never hold a session. What a
user sends is committed before the API answers: an item and its warm-up job are written
together, so a crash after the 202 loses nothing (``pending_items`` finds it again).

External ids are strings (a data set's integer ids as their decimal string); ``index`` is
the row of a user or item in the active model's embedding tables.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Table,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from services.lookups import SeenItemsCache
from services.tables import (
    Interaction,
    InteractionKind,
    Item,
    ItemOrigin,
    ItemStatus,
    Job,
    JobKind,
    JobStatus,
    ModelVersion,
    User,
    now,
)

#: Rows per INSERT batch when loading a data set: psycopg pipelines an executemany, so
#: bigger batches only cost memory.
CHUNK = 5000
#: Items a starting process enqueues again: accepted, not warm, not given up on.
PENDING: tuple[ItemStatus, ...] = ("queued", "warming", "degraded", "failed")
#: Key of the PostgreSQL advisory lock that serialises migrations across processes.
SCHEMA_LOCK = 0x6C6C6D696E73  # "llmins"

#: The Alembic scripts of the schema, and the revision that created the first tables.
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE_REVISION = "0001"

R = TypeVar("R")


def engine_url(url: str) -> URL:
    """``url`` for SQLAlchemy; ``postgresql://`` means psycopg 3, the driver installed."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def content_hash(text: str) -> str:
    """What tells a repeated post (same text) from a conflicting one (other text)."""
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ItemRecord:
    id: str
    text: str
    categories: list | None
    content_hash: str
    index: int | None
    origin: str
    status: str
    error: str | None
    model_version: str | None
    timings: dict | None
    created_at: datetime
    updated_at: datetime
    warmed_at: datetime | None
    withdrawn_at: datetime | None
    published_at: datetime | None


@dataclass(frozen=True)
class NewItem:
    """An item to store: what a client sent (POST, a batch, an import row)."""

    id: str
    text: str
    categories: Sequence[str] = ()
    published_at: datetime | None = None


@dataclass(frozen=True)
class Accepted:
    """What became of one item of a write: its warm-up job, its status, and whether it was
    new (False: the same item again, a no-op)."""

    item_id: str
    job_id: str
    status: str
    created: bool


@dataclass(frozen=True)
class TrainingData:
    """The store's items and real interactions as a model sees them (rows, not ids).

    Attributes:
        item_texts: every indexed item's text, by row (withdrawn ones too: their rows stay
            theirs; they have no interactions here, so no model learns them); None for the
            rows before the snapshot's ``texts_from``, which were not read.
        user_ids: every user with a row, by row: the model's users and ``new_users``.
        new_users: users outside the model given the next rows (written at the switch:
            :meth:`Store.adopt_users`).
        pairs: (user row, item row) real interactions, withdrawn items left out.
        recent: per pair, whether it was recorded at or after the snapshot's ``since``
            (what a refresh has not trained on yet; all False without ``since``).
    """

    item_texts: list[str | None]
    user_ids: list[str]
    new_users: dict[str, int]
    pairs: np.ndarray
    recent: np.ndarray


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
    """The id is taken by an item with other content (a new text needs a new id), or the
    item cannot be changed."""

    def __init__(self, item_id: str, message: str) -> None:
        self.item_id = item_id
        super().__init__(message)


class UnknownIds(StoreError):
    """Item ids the store does not know; ``items`` lists them (sorted) for the API."""

    def __init__(self, items: Iterable[str]) -> None:
        self.items = sorted(items)
        listed = ", ".join(self.items[:20]) + (" ..." if len(self.items) > 20 else "")
        super().__init__(f"unknown item ids: {listed}")


def _record(cls: type[R], row: object) -> R:
    """A detached snapshot of an ORM row: safe to use after its session is closed."""
    return cls(**{field.name: getattr(row, field.name) for field in fields(cls)})


def _new_job(kind: JobKind, item_id: str | None, status: JobStatus = "queued") -> Job:
    return Job(id=uuid.uuid4().hex, kind=kind, item_id=item_id, status=status, attempts=0)


#: (user, item row) of every real interaction with an indexed item: what recommendations
#: leave out.
ALL_SEEN_ITEMS = (
    select(Interaction.user_id, Item.index)
    .select_from(Interaction)
    .join(Item, Item.id == Interaction.item_id)
    .where(Interaction.kind == "real", Item.index.is_not(None))
    .order_by(Interaction.user_id, Item.index)
)
#: The item rows of one user (``:user_id``).
SEEN_ITEMS = ALL_SEEN_ITEMS.with_only_columns(Item.index).where(
    Interaction.user_id == bindparam("user_id")
)


class Store:
    """The service's relational store at a SQLAlchemy ``url``.

    ``seen_ttl_s``: how long a user's seen items are remembered (see
    :meth:`seen_item_indices`); 0 reads them from the database every time.
    """

    def __init__(
        self, url: str, seen_ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        parsed = engine_url(url)
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            # One engine serves the API's threads and the warm-up thread; a writer waits
            # up to 30 s for another's lock rather than failing at once.
            options = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        else:
            options = {"pool_pre_ping": True}
        self.engine = create_engine(parsed, **options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Row indices are given once and never change hands, so remembering them can never
        # go stale, only miss: the recommendation path reads them on every request.
        self._item_of_index: dict[int, str] = {}
        self._index_of_user: dict[str, int] = {}
        self._seen = SeenItemsCache(seen_ttl_s, clock=clock)

    def migrate(self) -> None:
        """Bring the schema to the newest migration; the API, workers and beat may all do
        it at one start.

        The check and the upgrade run under a lock (SQLite's write lock, a PostgreSQL
        advisory lock), so a second process waits and then finds the schema current. A
        database made before migrations existed (its tables, no revision) holds the first
        revision's schema: it is stamped with it, then upgraded like any other.
        """
        with self.engine.connect() as connection:
            if self.is_sqlite:
                # SQLite alters a table by copying it, dropping it and renaming the copy;
                # the drop would break the other tables' references until the rename. So
                # the references are checked after the whole upgrade instead (the pragma
                # works outside a transaction only).
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
            try:
                with connection.begin():
                    self._upgrade(connection)
            finally:
                if self.is_sqlite:
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()

    def _upgrade(self, connection: Connection) -> None:
        if self.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "items" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, "head")
        if self.is_sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise StoreError(f"the upgrade broke references: {broken[:5]}")

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions() as session, session.begin():
            yield session

    # -- items and jobs ---------------------------------------------------------------

    def submit_item(
        self, item_id: str, text: str, categories: Sequence[str] = ()
    ) -> tuple[ItemRecord, JobRecord, bool]:
        """Store a posted item and its warm-up job in one transaction; idempotent on the id.

        Returns (item, job, created); the rules are :meth:`submit_items`'.
        """
        (accepted,) = self.submit_items([NewItem(item_id, text, categories)])
        return self.get_item(item_id), self.get_job(accepted.job_id), accepted.created

    def submit_items(self, items: Sequence[NewItem]) -> list[Accepted]:
        """Store posted items, each with a warm-up job, all in one transaction (all or
        nothing); one answer per item, in order.

        The same text and categories again answer with the existing item and its latest
        job; other ones raise :class:`ItemConflict` and nothing is stored. Two concurrent
        writes of one id create it once: the loser's insert fails on the key, and its
        whole batch is tried again, now finding the id stored.
        """
        try:
            with self.batch() as batch:
                return batch.add_items(items)
        except IntegrityError:  # another request stored one of the ids first
            with self.batch() as batch:
                return batch.add_items(items)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """Writes of many items and interactions in one transaction: committed when the
        block ends, nothing kept if it raises (an import, a batch request)."""
        with self.session() as session:
            batch = Batch(self, session)
            try:
                yield batch
            finally:  # after the commit or the rollback: the next read sees what is there
                self._seen.forget(batch.users)

    def get_item(self, item_id: str) -> ItemRecord | None:
        with self.session() as session:
            item = session.get(Item, item_id)
            return None if item is None else _record(ItemRecord, item)

    def get_items(self, item_ids: Sequence[str]) -> dict[str, ItemRecord]:
        """The records of those of ``item_ids`` that exist, by id."""
        found: dict[str, ItemRecord] = {}
        with self.session() as session:
            for chunk in _chunks(list(dict.fromkeys(item_ids))):
                for item in session.scalars(select(Item).where(Item.id.in_(chunk))):
                    found[item.id] = _record(ItemRecord, item)
        return found

    def search_items(self, query: str | None, limit: int) -> list[ItemRecord]:
        """Items whose id starts with ``query`` or whose text holds it (any case), newest
        first; without a query, the newest. Withdrawn items are found too (for audit)."""
        statement = select(Item).order_by(Item.created_at.desc(), Item.id).limit(limit)
        if query:
            statement = statement.where(
                Item.id.startswith(query, autoescape=True)
                | Item.text.icontains(query, autoescape=True)
            )
        with self.session() as session:
            return [_record(ItemRecord, item) for item in session.scalars(statement)]

    def withdraw_item(self, item_id: str) -> ItemRecord:
        """Mark the item withdrawn (the first time only: a repeat keeps the first time) and
        return it; the caller takes it out of the vector index.

        Raises:
            UnknownIds: no such item.
        """
        with self.session() as session:
            item = session.get(Item, item_id, with_for_update=True)
            if item is None:
                raise UnknownIds(items=[item_id])
            if item.withdrawn_at is None:
                item.withdrawn_at = now()
                session.flush()
            return _record(ItemRecord, item)

    def change_item_text(self, item_id: str, text: str) -> tuple[ItemRecord, JobRecord, bool]:
        """New text for a posted item: queued again with a new warm-up job, in one
        transaction. Returns (item, job, changed); the same text again changes nothing and
        returns the latest job.

        Raises:
            UnknownIds: no such item.
            ItemConflict: it was withdrawn, or it is a data-set item (its vector is learned
                from its interactions, not from its text).
        """
        digest = content_hash(text)
        with self.session() as session:
            item = session.get(Item, item_id, with_for_update=True)
            if item is None:
                raise UnknownIds(items=[item_id])
            if item.withdrawn_at is not None:
                raise ItemConflict(item_id, f"item {item_id!r} was withdrawn; post a new item")
            if item.origin != "api":
                raise ItemConflict(
                    item_id,
                    f"item {item_id!r} is a data-set item: its vector is learned from its "
                    "interactions, so its text cannot change it; post a new item",
                )
            if item.content_hash == digest:
                job = self._latest_job(session, item_id)
                return _record(ItemRecord, item), _record(JobRecord, job), False
            item.text, item.content_hash = text, digest
            item.status, item.error, item.updated_at = "queued", None, now()
            job = _new_job("warm_up", item_id)
            session.add(job)
            session.flush()
            return _record(ItemRecord, item), _record(JobRecord, job), True

    def set_item_status(
        self,
        item_id: str,
        status: ItemStatus,
        *,
        error: str | None = None,
        model_version: str | None = None,
        timings: dict | None = None,
        index: int | None = None,
        text_hash: str | None = None,
    ) -> bool:
        """Move an item to ``status``; False where ``text_hash`` is given and the item's
        text has changed since (a warm-up of the old text must not mark the new one).

        ``error`` is always written (a status change clears an old error); the other
        fields only when given, so a later stage never erases what an earlier one set.
        Becoming ``warm`` stamps ``warmed_at``.
        """
        values: dict[str, Any] = {"status": status, "error": error, "updated_at": now()}
        if model_version is not None:
            values["model_version"] = model_version
        if timings is not None:
            values["timings"] = timings
        if index is not None:
            values["index"] = index
        if status == "warm":
            values["warmed_at"] = values["updated_at"]
        if text_hash is None:
            self._update_one(Item, item_id, values)
            return True
        with self.session() as session:
            result = session.execute(
                update(Item)
                .where(Item.id == item_id, Item.content_hash == text_hash)
                .values(**values)
            )
            return result.rowcount == 1

    def assign_index(self, item_id: str, attempts: int = 20) -> int:
        """Give the item the next free row index (once); safe under concurrent workers.

        Two workers may read the same maximum; the unique index lets one win and the
        other retries with the next number.
        """
        for _ in range(attempts):
            try:
                with self.session() as session:
                    item = session.get(Item, item_id)
                    if item is None:
                        raise UnknownIds(items=[item_id])
                    if item.index is not None:
                        return item.index
                    item.index = self._next_index(session)
                    session.flush()
                    viewers = session.scalars(
                        select(Interaction.user_id).where(
                            Interaction.item_id == item_id, Interaction.kind == "real"
                        )
                    ).all()
                    index = item.index
            except IntegrityError:
                continue
            # Users who interacted with it before it had an index now have one more seen item.
            self._seen.forget(viewers)
            return index
        raise StoreError(f"could not assign an index to item {item_id!r}")

    def index_every_item(self, attempts: int = 20) -> int:
        """Give every item without a row index one (oldest first), withdrawn ones left out:
        what a training from the store does first, so that each item has its row in the
        new model. Returns how many it gave."""
        for _ in range(attempts):
            try:
                with self.session() as session:
                    waiting = session.scalars(
                        select(Item)
                        .where(Item.index.is_(None), Item.withdrawn_at.is_(None))
                        .order_by(Item.created_at, Item.id)
                    ).all()
                    start = self._next_index(session)
                    for offset, item in enumerate(waiting):
                        item.index = start + offset
                    session.flush()
            except IntegrityError:  # a warm-up took the next index first: read again
                continue
            if waiting:  # users of these items have more seen items now
                self._seen.forget()
            return len(waiting)
        raise StoreError("could not give every item a row index")

    def training_snapshot(
        self,
        since: datetime | None = None,
        first_new_row: int | None = None,
        texts_from: int = 0,
    ) -> TrainingData:
        """What a model version trained from the store learns from, read in one
        transaction: see :class:`TrainingData`. ``since`` marks the pairs recorded from
        then on; users outside the model get rows from ``first_new_row`` (default: after
        the last user row). Texts are read from row ``texts_from`` on: a refresh whose
        version already holds the earlier rows' content vectors, and lists no texts in
        prompts, reads only the items indexed since (the catalogue's texts can be most of
        the store)."""
        with self.session() as session:
            last = session.execute(select(func.max(Item.index))).scalar()
            texts: list[str | None] = [None] * (0 if last is None else last + 1)
            texts[texts_from:] = [""] * max(len(texts) - texts_from, 0)
            rows = session.execute(
                select(Item.index, Item.text).where(Item.index >= texts_from)
            ).all()
            for index, text in rows:
                texts[index] = text
            users = session.execute(select(User.id, User.index)).all()
            known = {user: index for user, index in users if index is not None}
            interactions = session.execute(
                select(Interaction.user_id, Item.index, Interaction.created_at)
                .join(Item, Item.id == Interaction.item_id)
                .where(
                    Interaction.kind == "real",
                    Item.index.is_not(None),
                    Item.withdrawn_at.is_(None),
                )
            ).all()
        next_row = max(known.values(), default=-1) + 1
        if first_new_row is not None:
            next_row = max(next_row, first_new_row)
        # Rows and order fixed in Python, not by the database's collation: the same store
        # content trains the same model on SQLite and PostgreSQL.
        outside = sorted({user for user, _, _ in interactions if user not in known})
        new_users = {user: next_row + offset for offset, user in enumerate(outside)}
        next_row += len(outside)
        rows = {**known, **new_users}
        pairs = _pairs([(rows[user], item) for user, item, _ in interactions])
        recent = np.array([since is not None and at >= since for _, _, at in interactions], bool)
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        user_ids = [""] * next_row
        for user, row in rows.items():
            user_ids[row] = user
        return TrainingData(texts, user_ids, new_users, pairs[order], recent[order])

    def adopt_users(self, rows: dict[str, int]) -> None:
        """Give users outside the model their rows in a new model version (at its switch)."""
        with self.session() as session:
            for user, row in rows.items():
                session.execute(update(User).where(User.id == user).values(index=row))
        self._index_of_user.update(rows)

    def release_rows_from(self, first: int) -> None:
        """Users with a row at or past ``first`` are outside the model again: a version
        trained on a data set that lacks them (a retraining after refreshes gave them rows)
        has no vector of theirs; they are folded in until a version trains them."""
        with self.session() as session:
            session.execute(update(User).where(User.index >= first).values(index=None))
        self._index_of_user = {
            user: row for user, row in self._index_of_user.items() if row is None or row < first
        }

    def mark_warm(self, item_ids: Sequence[str], model_version: str, origin: ItemOrigin) -> None:
        """Items warm under ``model_version`` (a switch): ``dataset`` for those it learned
        from their real interactions (their vector is the backbone's, their text cannot
        change it), ``api`` for those it warmed like posted ones."""
        stamp = now()
        with self.session() as session:
            for chunk in _chunks(item_ids):
                session.execute(
                    update(Item)
                    .where(Item.id.in_(chunk))
                    .values(
                        origin=origin,
                        status="warm",
                        error=None,
                        model_version=model_version,
                        warmed_at=stamp,
                        updated_at=stamp,
                    )
                )

    def pending_items(self) -> list[str]:
        """Posted items not warm yet (nor withdrawn), oldest first: what a starting process
        enqueues again."""
        with self.session() as session:
            rows = session.scalars(
                select(Item.id)
                .where(Item.status.in_(PENDING), Item.withdrawn_at.is_(None))
                .order_by(Item.created_at)
            )
            return list(rows)

    def item_ids(self, indices: Sequence[int]) -> dict[int, str]:
        """Item id of each known row index (turns the vector index's hits into ids)."""
        missing = [int(i) for i in indices if int(i) not in self._item_of_index]
        if missing:
            with self.session() as session:
                rows = session.execute(select(Item.index, Item.id).where(Item.index.in_(missing)))
                self._item_of_index.update({index: item_id for index, item_id in rows})
        known = self._item_of_index
        return {int(i): known[int(i)] for i in indices if int(i) in known}

    def indexed_items(self) -> dict[int, tuple[str, str]]:
        """Every item with a row index, withdrawn ones left out: index -> (id, origin)."""
        with self.session() as session:
            rows = session.execute(
                select(Item.index, Item.id, Item.origin).where(
                    Item.index.is_not(None), Item.withdrawn_at.is_(None)
                )
            )
            return {index: (item_id, origin) for index, item_id, origin in rows}

    def categories_of(self, indices: Sequence[int]) -> dict[int, list[str]]:
        """The categories of items by row index (those that have some)."""
        wanted = [int(i) for i in indices]
        found: dict[int, list[str]] = {}
        with self.session() as session:
            for chunk in _chunks(wanted):
                rows = session.execute(
                    select(Item.index, Item.categories).where(Item.index.in_(chunk))
                )
                found.update({index: labels for index, labels in rows if labels})
        return found

    def withdrawn_indices(self) -> set[int]:
        """Row indices of withdrawn items (what an index build leaves out)."""
        with self.session() as session:
            rows = session.scalars(
                select(Item.index).where(Item.index.is_not(None), Item.withdrawn_at.is_not(None))
            )
            return set(rows)

    def create_job(self, kind: JobKind, item_id: str | None = None) -> JobRecord:
        with self.session() as session:
            job = _new_job(kind, item_id)
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

    def recent_jobs(
        self,
        kinds: Sequence[JobKind] | None = None,
        status: JobStatus | None = None,
        limit: int = 50,
        finished_since: datetime | None = None,
    ) -> list[JobRecord]:
        """Jobs newest first, of ``kinds`` and ``status`` where given, and those finished
        at or after ``finished_since`` where given."""
        statement = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
        if kinds is not None:
            statement = statement.where(Job.kind.in_(list(kinds)))
        if status is not None:
            statement = statement.where(Job.status == status)
        if finished_since is not None:
            statement = statement.where(Job.finished_at >= finished_since)
        with self.session() as session:
            return [_record(JobRecord, job) for job in session.scalars(statement)]

    def job_counts(self) -> dict[str, dict[str, int]]:
        """Jobs by kind, then status: a warm-up queue's depth is its queued and running."""
        counts: dict[str, dict[str, int]] = {}
        with self.session() as session:
            rows = session.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
            )
            for kind, status, n in rows:
                counts.setdefault(kind, {})[status] = n
        return counts

    def start_job(self, job_id: str) -> None:
        """Mark a job running; ``attempts`` counts every start, redeliveries included."""
        self._update_one(
            Job, job_id, {"status": "running", "attempts": Job.attempts + 1, "started_at": now()}
        )

    def finish_job(
        self,
        job_id: str,
        status: JobStatus,
        result: dict | None = None,
        error: str | None = None,
    ) -> None:
        self._update_one(
            Job, job_id, {"status": status, "result": result, "error": error, "finished_at": now()}
        )

    def finish_warm_ups(self, item_ids: Sequence[str], model_version: str) -> None:
        """Mark the queued or running warm-ups of ``item_ids`` succeeded: a switch to
        ``model_version`` warmed (or learned) those items itself."""
        result = {"status": "warm", "model_version": model_version, "by": "the switch"}
        with self.session() as session:
            for chunk in _chunks(item_ids):
                session.execute(
                    update(Job)
                    .where(
                        Job.kind == "warm_up",
                        Job.item_id.in_(chunk),
                        Job.status.in_(("queued", "running")),
                    )
                    .values(status="succeeded", result=result, finished_at=now())
                )

    def fail_unfinished_jobs(self, kinds: Sequence[JobKind], error: str) -> list[str]:
        """Mark every queued or running job of ``kinds`` failed with ``error`` (the process
        that ran them is gone); returns their ids."""
        with self.session() as session:
            ids = list(
                session.scalars(
                    select(Job.id).where(Job.kind.in_(kinds), Job.status.in_(("queued", "running")))
                )
            )
            if ids:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(ids))
                    .values(status="failed", error=error, finished_at=now())
                )
        return ids

    # -- users and interactions -------------------------------------------------------

    def user_index(self, user_id: str) -> int | None:
        if user_id not in self._index_of_user:
            with self.session() as session:
                index = session.scalar(select(User.index).where(User.id == user_id))
            if index is None:
                return None
            self._index_of_user[user_id] = index
        return self._index_of_user[user_id]

    def user_summary(self, user_id: str) -> tuple[int | None, int] | None:
        """(row index or None, number of real interactions) of a known user, else None."""
        with self.session() as session:
            user = session.get(User, user_id)
            if user is None:
                return None
            count = session.scalar(
                select(func.count())
                .select_from(Interaction)
                .where(Interaction.user_id == user_id, Interaction.kind == "real")
            )
            return user.index, int(count or 0)

    def add_interactions(self, pairs: Sequence[tuple[str, str]]) -> int:
        """Real (user, item) interactions; repeats are no-ops. Returns how many were new.

        The rules are :meth:`Batch.add_interactions`': all or nothing, new users added.
        """
        with self.batch() as batch:
            return batch.add_interactions([(user, item, None) for user, item in pairs])

    def replace_simulated(
        self,
        item_id: str,
        users_with_p: Sequence[tuple[str, float]],
        model_version: str,
        evidence: Sequence[dict[str, float | None]] | None = None,
    ) -> int:
        """Replace the item's simulated interactions as a whole; returns how many it wrote.

        ``evidence``, one per user: why the warm-up kept them (:meth:`simulated_detail`).

        A redelivered warm-up therefore never duplicates them. The item's row is locked
        first (PostgreSQL), so two deliveries running at once replace in turn instead of
        colliding on the unique index.
        """
        stamp = now()
        with self.session() as session:
            locked = session.scalar(select(Item.id).where(Item.id == item_id).with_for_update())
            if locked is None:
                raise UnknownIds(items=[item_id])
            session.execute(
                delete(Interaction).where(
                    Interaction.item_id == item_id, Interaction.kind == "simulated"
                )
            )
            rows = [
                {
                    "user_id": user,
                    "item_id": item_id,
                    "kind": "simulated",
                    "p_yes": float(p),
                    "model_version": model_version,
                    "evidence": None if evidence is None else evidence[row],
                    "created_at": stamp,
                }
                for row, (user, p) in enumerate(users_with_p)
            ]
            if rows:
                session.execute(insert(Interaction), rows)
        return len(rows)

    def simulated_for(self, item_id: str) -> list[tuple[str, float]]:
        """(user id, score) of the item's simulated users, best first.

        The score is the refiner's probability (its column keeps the name ``p_yes`` of
        the first schema); whether the refiner read the LM's answer is the model
        version's (:meth:`Runtime.asked_lm`).
        """
        return [(user, p) for user, p, _ in self.simulated_detail(item_id)]

    def simulated_detail(self, item_id: str) -> list[tuple[str, float, dict | None]]:
        """:meth:`simulated_for` with each user's evidence: what the refiner read for them
        (None where the warm-up predates its recording)."""
        with self.session() as session:
            rows = session.execute(
                select(Interaction.user_id, Interaction.p_yes, Interaction.evidence)
                .where(Interaction.item_id == item_id, Interaction.kind == "simulated")
                .order_by(Interaction.p_yes.desc(), Interaction.user_id)
            )
            return [(user, p, evidence) for user, p, evidence in rows]

    def popular_items(self, since: datetime, limit: int) -> list[tuple[str, int]]:
        """(item id, real interactions since ``since``) of the most interacted-with items,
        most first (ties: by id), withdrawn items left out: the fallback ranking of a
        service without a model for the user. An interaction's time is when it occurred
        where its source said, else when it was recorded."""
        when = func.coalesce(Interaction.occurred_at, Interaction.created_at)
        count = func.count().label("n")
        with self.session() as session:
            rows = session.execute(
                select(Interaction.item_id, count)
                .join(Item, Item.id == Interaction.item_id)
                .where(Interaction.kind == "real", when >= since, Item.withdrawn_at.is_(None))
                .group_by(Interaction.item_id)
                .order_by(count.desc(), Interaction.item_id)
                .limit(limit)
            ).all()
        return [(item_id, int(n)) for item_id, n in rows]

    def latest_items(self, limit: int) -> list[str]:
        """Ids of the newest items (published, else recorded), withdrawn ones left out."""
        newest = func.coalesce(Item.published_at, Item.created_at).desc()
        with self.session() as session:
            return list(
                session.scalars(
                    select(Item.id)
                    .where(Item.withdrawn_at.is_(None))
                    .order_by(newest, Item.id)
                    .limit(limit)
                )
            )

    def item_facets(self, item_ids: Sequence[str]) -> dict[str, tuple[str, list[str]]]:
        """item id -> (origin, categories) of the given items."""
        facets: dict[str, tuple[str, list[str]]] = {}
        with self.session() as session:
            for chunk in _chunks(item_ids):
                rows = session.execute(
                    select(Item.id, Item.origin, Item.categories).where(Item.id.in_(chunk))
                )
                facets.update((i, (origin, labels or [])) for i, origin, labels in rows)
        return facets

    def seen_item_ids(self, user_id: str) -> set[str]:
        """Ids of every item the user really interacted with, indexed or not."""
        with self.session() as session:
            return set(
                session.scalars(
                    select(Interaction.item_id).where(
                        Interaction.user_id == user_id, Interaction.kind == "real"
                    )
                )
            )

    def seen_item_indices(self, user_id: str) -> tuple[int, ...]:
        """Row indices of the items the user really interacted with (left out of their
        recommendations); simulated interactions are guesses, not views, and do not count.

        Read on every recommendation, so remembered per user for ``seen_ttl_s``: this
        process's own writes update it at once; a write through another process (another
        API replica) is seen when the entry expires. The query itself goes through one
        prepared Core statement: the ORM session cost more than the ranking.
        """
        return self._seen.get(user_id, self._read_seen)

    def remember_lookups(self) -> int:
        """Read all that the recommendation path looks up, a few queries in all, for a
        server about to serve: every user's row index and seen items (with the cache) and
        every indexed item's id. Otherwise each user's and item's first appearance is a
        database read on the event loop. Returns how many users have seen items."""
        generation = self._seen.generation()
        seen: dict[str, list[int]] = {}
        with self.session() as session:
            rows = session.execute(select(User.id, User.index))
            self._index_of_user.update({user_id: index for user_id, index in rows})
            rows = session.execute(select(Item.index, Item.id).where(Item.index.is_not(None)))
            self._item_of_index.update({index: item_id for index, item_id in rows})
            if not self._seen.enabled:
                return 0
            for user_id, index in session.execute(ALL_SEEN_ITEMS):
                seen.setdefault(user_id, []).append(index)
        self._seen.fill(generation, self._index_of_user, seen)
        return len(seen)

    def _read_seen(self, user_id: str) -> tuple[int, ...]:
        with self.engine.connect() as connection:
            return tuple(connection.execute(SEEN_ITEMS, {"user_id": user_id}).scalars())

    def real_counts(self, item_ids: Sequence[str]) -> dict[str, int]:
        """item id -> its real interactions, for those of ``item_ids`` that have any."""
        counts: dict[str, int] = {}
        with self.session() as session:
            for chunk in _chunks(item_ids):
                rows = session.execute(
                    select(Interaction.item_id, func.count())
                    .where(
                        Interaction.kind == "real",
                        Interaction.item_id.in_(chunk),
                    )
                    .group_by(Interaction.item_id)
                )
                counts.update((item_id, int(n)) for item_id, n in rows)
        return counts

    def graduate(self, item_ids: Sequence[str], model_version: str) -> None:
        """Posted items a model version learned from their real interactions: their
        simulated ones are dropped and they are served as learned items from now on."""
        if not item_ids:
            return
        with self.session() as session:
            for chunk in _chunks(item_ids):
                session.execute(
                    delete(Interaction).where(
                        Interaction.kind == "simulated",
                        Interaction.item_id.in_(chunk),
                    )
                )
        self.mark_warm(item_ids, model_version, "dataset")

    def simulated_since(self, since: datetime) -> int:
        """How many simulated interactions were written at or after ``since`` (items warmed
        since then)."""
        with self.session() as session:
            count = session.scalar(
                select(func.count())
                .select_from(Interaction)
                .where(Interaction.kind == "simulated", Interaction.created_at >= since)
            )
        return int(count or 0)

    def simulated_interaction_indices(self) -> np.ndarray:
        """Simulated (user, item) index pairs: what a refresh trains on beside the real ones."""
        with self.session() as session:
            rows = session.execute(
                select(User.index, Item.index)
                .select_from(Interaction)
                .join(User, User.id == Interaction.user_id)
                .join(Item, Item.id == Interaction.item_id)
                .where(
                    Interaction.kind == "simulated",
                    Item.index.is_not(None),
                    Item.withdrawn_at.is_(None),
                )
            ).all()
        return _pairs(rows)

    def counts(self) -> dict[str, Any]:
        """{"items": {status: n}, "users": n, "interactions": {kind: n}} for health and tests."""
        with self.session() as session:
            by_status = select(Item.status, func.count()).group_by(Item.status)
            by_kind = select(Interaction.kind, func.count()).group_by(Interaction.kind)
            items = {status: n for status, n in session.execute(by_status)}
            interactions = {kind: n for kind, n in session.execute(by_kind)}
            users = session.scalar(select(func.count()).select_from(User))
        return {"items": items, "users": users, "interactions": interactions}

    def item_origins(self) -> dict[str, int]:
        """Items by origin: the data set's (learned) and the posted (warmed) ones, withdrawn
        items left out."""
        statement = (
            select(Item.origin, func.count())
            .where(Item.withdrawn_at.is_(None))
            .group_by(Item.origin)
        )
        with self.session() as session:
            return {origin: n for origin, n in session.execute(statement)}

    # -- bulk loading (bootstrap) -----------------------------------------------------

    def is_empty(self) -> bool:
        """True before any user or item is loaded: bootstrap's catalogue is not there yet."""
        with self.session() as session:
            return not session.scalar(select(exists(select(User.id)) | exists(select(Item.id))))

    def load_users(self, ids_with_index: Iterable[tuple[str, int]]) -> None:
        """(id, row index) of a data set's users, in one transaction."""
        rows = [{"id": user, "index": int(index)} for user, index in ids_with_index]
        self._bulk_insert(User.__table__, rows)

    def load_items(self, rows: Iterable[tuple[str, str, int, ItemStatus]]) -> None:
        """(id, text, row index, status) of a data set's items, in one transaction."""
        stamp = now()
        self._bulk_insert(
            Item.__table__,
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

    def load_interactions(
        self, pairs: Iterable[tuple[str, str]], kind: InteractionKind = "real"
    ) -> None:
        """(user id, item id) pairs, repeats dropped, in one transaction."""
        stamp = now()
        rows = [
            {"user_id": u, "item_id": i, "kind": kind, "created_at": stamp}
            for u, i in dict.fromkeys(pairs)
        ]
        try:
            self._bulk_insert(Interaction.__table__, rows)
        finally:
            self._seen.forget()

    # -- model versions ---------------------------------------------------------------

    def register_version(self, version: str, path: str, metrics: dict | None = None) -> None:
        """Record a trained version (inactive until :meth:`activate`)."""
        with self.session() as session:
            session.add(ModelVersion(id=version, path=path, metrics=metrics, active=False))

    def activate(self, version: str) -> None:
        """Make ``version`` the only active one, in one statement of one transaction.

        Readers therefore see the old version or the new one, never none or two.
        """
        with self.session() as session:
            if session.get(ModelVersion, version) is None:
                raise StoreError(f"model version {version!r} is not registered")
            session.execute(update(ModelVersion).values(active=ModelVersion.id == version))

    def versions(self) -> list[VersionRecord]:
        """Every registered model version, newest first."""
        with self.session() as session:
            # Version names start with their UTC time: the tie-break of equal timestamps.
            newest = (ModelVersion.created_at.desc(), ModelVersion.id.desc())
            rows = session.scalars(select(ModelVersion).order_by(*newest))
            return [_record(VersionRecord, row) for row in rows]

    def version(self, version: str) -> VersionRecord | None:
        with self.session() as session:
            row = session.get(ModelVersion, version)
            return None if row is None else _record(VersionRecord, row)

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

    def _update_one(self, model: type[Item] | type[Job], key: str, values: dict) -> None:
        """Update one row by id; an unknown id is an error, not a silent no-op."""
        with self.session() as session:
            result = session.execute(update(model).where(model.id == key).values(**values))
            if result.rowcount == 0:
                raise StoreError(f"{model.__tablename__} has no row {key!r}")

    @staticmethod
    def _check_known(session: Session, items: set[str]) -> None:
        known = set(session.scalars(select(Item.id).where(Item.id.in_(items))))
        if items - known:
            raise UnknownIds(items=items - known)

    def _add_users(self, session: Session, user_ids: Sequence[str]) -> None:
        """Users not in the store yet, outside the model (ON CONFLICT DO NOTHING: two
        requests may add the same new user at once)."""
        dialect = sqlite if self.is_sqlite else postgresql
        statement = dialect.insert(User.__table__).on_conflict_do_nothing()
        for chunk in _chunks(user_ids):
            session.execute(statement, [{"id": user, "index": None} for user in chunk])

    def _insert_new(self, session: Session, rows: list[dict]) -> int:
        """INSERT ... ON CONFLICT DO NOTHING in the store's dialect; returns rows inserted."""
        dialect = sqlite if self.is_sqlite else postgresql
        table = Interaction.__table__
        statement = dialect.insert(table).on_conflict_do_nothing().returning(table.c.id)
        inserted = 0
        for chunk in _chunks(rows):
            inserted += len(session.execute(statement, chunk).all())
        return inserted

    def _bulk_insert(self, table: Table, rows: list[dict]) -> None:
        """Core executemany in chunks: thousands of rows a second, no ORM objects."""
        with self.session() as session:
            for chunk in _chunks(rows):
                session.execute(insert(table), chunk)


class Batch:
    """Writes inside one transaction of the store (:meth:`Store.batch`): a batch request
    or a whole import, which may call these many times, chunk by chunk."""

    def __init__(self, store: Store, session: Session) -> None:
        self.store = store
        self.session = session
        #: Users whose interactions changed: their remembered seen items are forgotten.
        self.users: set[str] = set()

    def add_items(self, items: Sequence[NewItem]) -> list[Accepted]:
        """Items, each new one queued with a warm-up job; one answer per item, in order.

        An id already stored (or given twice) with the same text and categories is a
        repeat: answered with its latest job, nothing written.

        Raises:
            ItemConflict: an id stored (or given twice) with other content, or withdrawn.
        """
        first: dict[str, tuple[str, list[str] | None]] = {}
        for item in items:
            content = (content_hash(item.text), sorted(set(item.categories)) or None)
            if first.setdefault(item.id, content) != content:
                raise ItemConflict(
                    item.id, f"item {item.id!r} is given twice with different content"
                )
        stored = self._stored_items(list(first))
        for item_id, row in stored.items():
            _check_repeat(row, *first[item_id])
        latest = self._latest_jobs(list(stored))
        stamp = now()
        answers: dict[str, Accepted] = {}
        new_items: list[dict] = []
        new_jobs: list[dict] = []
        for item in items:
            if item.id in answers:
                continue
            job_id = uuid.uuid4().hex
            row = stored.get(item.id)
            if row is not None:
                if item.id in latest:
                    job_id = latest[item.id]
                else:  # a data-set item: warm from the start, so its job is done
                    new_jobs.append(_job_row(job_id, item.id, "succeeded", stamp))
                answers[item.id] = Accepted(item.id, job_id, row.status, created=False)
                continue
            digest, categories = first[item.id]
            new_items.append(
                {
                    "id": item.id,
                    "text": item.text,
                    "categories": categories,
                    "content_hash": digest,
                    "origin": "api",
                    "status": "queued",
                    "published_at": item.published_at,
                    "created_at": stamp,
                    "updated_at": stamp,
                }
            )
            new_jobs.append(_job_row(job_id, item.id, "queued", stamp))
            answers[item.id] = Accepted(item.id, job_id, "queued", created=True)
        for table, rows in ((Item.__table__, new_items), (Job.__table__, new_jobs)):
            for chunk in _chunks(rows):
                self.session.execute(insert(table), chunk)
        return [answers[item.id] for item in items]

    def add_interactions(self, rows: Sequence[tuple[str, str, datetime | None]]) -> int:
        """Real (user, item, when or None) interactions; a repeated pair is a no-op (the
        first time given is kept). Returns how many were new.

        A user id seen for the first time is added, outside the model (no row index).
        Unknown item ids raise :class:`UnknownIds` (the whole transaction is then rolled
        back). The count comes from the rows the insert returns, so it stays exact when
        other requests insert the same pairs at the same time; pairs go in sorted, so two
        overlapping batches lock their keys in one order and cannot deadlock (PostgreSQL).
        """
        when: dict[tuple[str, str], datetime | None] = {}
        for user, item, at in rows:
            when.setdefault((user, item), at)
        pairs = sorted(when)
        users = sorted({u for u, _ in pairs})
        self.store._check_known(self.session, {i for _, i in pairs})
        self.users.update(users)
        self.store._add_users(self.session, users)
        return self.store._insert_new(
            self.session,
            [
                {"user_id": u, "item_id": i, "kind": "real", "occurred_at": when[u, i]}
                for u, i in pairs
            ],
        )

    def _stored_items(self, ids: Sequence[str]) -> dict[str, Item]:
        stored: dict[str, Item] = {}
        for chunk in _chunks(ids):
            query = select(Item).where(Item.id.in_(chunk))
            stored.update((row.id, row) for row in self.session.scalars(query))
        return stored

    def _latest_jobs(self, item_ids: Sequence[str]) -> dict[str, str]:
        """item id -> id of its latest job, for those that have one."""
        latest: dict[str, str] = {}
        for chunk in _chunks(item_ids):
            rows = self.session.execute(
                select(Job.item_id, Job.id).where(Job.item_id.in_(chunk)).order_by(Job.created_at)
            )
            latest.update((item_id, job_id) for item_id, job_id in rows)
        return latest


def _check_repeat(item: Item, digest: str, categories: list[str] | None) -> None:
    """A stored item given again: a repeat only with the same content and not withdrawn."""
    if item.content_hash != digest or item.categories != categories:
        raise ItemConflict(
            item.id, f"item {item.id!r} exists with different content; post it under a new id"
        )
    if item.withdrawn_at is not None:
        raise ItemConflict(
            item.id,
            f"item {item.id!r} was withdrawn at {item.withdrawn_at.isoformat()}; "
            "post it under a new id",
        )


def _job_row(job_id: str, item_id: str, status: JobStatus, stamp: datetime) -> dict:
    return {
        "id": job_id,
        "kind": "warm_up",
        "item_id": item_id,
        "status": status,
        "attempts": 0,
        "created_at": stamp,
    }


def _chunks(values: Sequence[R]) -> Iterator[Sequence[R]]:
    """``values`` in slices of :data:`CHUNK`: one statement's worth of parameters each."""
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _pairs(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.array([tuple(row) for row in rows], dtype=np.int64).reshape(-1, 2)


def _sqlite_pragmas(connection: sqlite3.Connection, _record: Any) -> None:
    """WAL lets readers run beside the writer; SQLite checks foreign keys only when asked."""
    cursor = connection.cursor()
    _enable_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _enable_wal(cursor: sqlite3.Cursor, wait_s: float = 10.0) -> None:
    """Switch the file to WAL (it stays so), retrying while another connection is opening it.

    The switch needs an exclusive lock; when several processes open a fresh file at once,
    SQLite answers "database is locked" at once rather than wait into a deadlock.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
