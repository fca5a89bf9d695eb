"""The relational store, every test on SQLite and on the real PostgreSQL (the ``url`` and
``store`` fixtures of tests/services/conftest.py say how)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from services.settings import Settings
from services.store import (
    BASELINE_REVISION,
    CHUNK,
    MIGRATIONS,
    ItemConflict,
    Store,
    StoreError,
    UnknownIds,
)
from services.tables import Base, Job, ModelVersion
from tests.services.conftest import SESSION_TIME_ZONE

T = TypeVar("T")


@pytest.fixture
def loaded(store) -> Store:
    """Three users, two data-set items, one real interaction (u0 saw i0)."""
    store.load_users([("u0", 0), ("u1", 1), ("u2", 2)])
    store.load_items([("i0", "first paper", 0, "warm"), ("i1", "second paper", 1, "warm")])
    store.load_interactions([("u0", "i0")])
    return store


def run_at_once(task: Callable[[], T], n: int) -> tuple[list[T], list[Exception]]:
    """Run ``task`` in ``n`` threads released together; returns (results, errors)."""
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[Exception] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(task())
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def active_versions(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(ModelVersion.id).where(ModelVersion.active)))


def test_the_engine_is_set_up_for_its_backend(store) -> None:
    with store.engine.connect() as connection:
        if store.is_sqlite:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        else:
            assert store.engine.dialect.driver == "psycopg"
            assert connection.exec_driver_sql("SHOW TimeZone").scalar() == SESSION_TIME_ZONE


def test_every_process_may_create_the_tables_at_once(url) -> None:
    """As the API, workers and beat do at one start: each its own engine and connections."""
    stores = [Store(url) for _ in range(4)]
    waiting = list(stores)
    try:
        _, errors = run_at_once(lambda: waiting.pop().migrate(), 4)
        assert not errors
    finally:
        for store in stores:
            store.dispose()
    store = Store(url)
    assert store.is_empty()
    store.dispose()


def test_the_migrations_build_the_schema_the_tables_declare(store) -> None:
    """A change to services/tables.py without its migration shows here as a difference."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            (ScriptDirectory(str(MIGRATIONS)).get_current_head(),)
        ]


def test_a_database_made_before_migrations_is_stamped_and_keeps_its_rows(url) -> None:
    """Deployments hold data: their tables came from ``create_all`` (the baseline's schema),
    with no revision; they are stamped with the baseline and upgraded to the head."""
    old = Store(url)
    with old.engine.begin() as connection:  # the baseline's tables, and no revision
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, BASELINE_REVISION)
        connection.execute(text("DROP TABLE alembic_version"))
    old.load_users([("u0", 0)])
    old.load_items([("i0", "first paper", 0, "warm")])
    old.load_interactions([("u0", "i0")])
    old.migrate()
    old.migrate()  # a second start finds the schema current
    with old.engine.connect() as connection:
        revisions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert revisions == [(ScriptDirectory(str(MIGRATIONS)).get_current_head(),)]
    assert old.user_index("u0") == 0 and old.seen_item_indices("u0") == (0,)
    # Upgraded past the baseline: a user outside the model can be stored now.
    old.add_interactions([("newcomer", "i0")])
    assert old.user_summary("newcomer") == (None, 1)
    old.dispose()


def test_a_new_item_is_stored_with_a_queued_job(loaded) -> None:
    item, job, created = loaded.submit_item("new", "a new paper")
    assert created and (item.status, item.origin, item.index) == ("queued", "api", None)
    assert item.content_hash == hashlib.sha256(b"a new paper").hexdigest()
    assert (job.kind, job.item_id, job.status, job.attempts) == ("warm_up", "new", "queued", 0)
    assert loaded.get_item("new") == item
    assert loaded.latest_job("new") == job == loaded.get_job(job.id)


def test_new_text_queues_the_item_again_and_an_old_warm_up_cannot_mark_it(loaded) -> None:
    item, _, _ = loaded.submit_item("new", "a new paper")
    loaded.set_item_status("new", "warm", model_version="v1")
    changed, job, was_changed = loaded.change_item_text("new", "a better title")
    assert was_changed and (changed.status, changed.text) == ("queued", "a better title")
    assert loaded.latest_job("new") == job and job.status == "queued"
    # A warm-up of the old text ends after the change: the new text stays queued.
    assert not loaded.set_item_status("new", "warm", text_hash=item.content_hash)
    assert loaded.get_item("new").status == "queued"
    assert loaded.set_item_status("new", "warm", text_hash=changed.content_hash)
    again, same_job, was_changed = loaded.change_item_text("new", "a better title")
    assert not was_changed and same_job == job and again.status == "warm"
    with pytest.raises(ItemConflict, match="data-set item"):
        loaded.change_item_text("i0", "new words")
    loaded.withdraw_item("new")
    with pytest.raises(ItemConflict, match="withdrawn"):
        loaded.change_item_text("new", "yet another title")
    with pytest.raises(UnknownIds):
        loaded.change_item_text("ghost", "text")


def test_posting_again_is_idempotent_and_other_content_conflicts(loaded) -> None:
    first, job, _ = loaded.submit_item("new", "a new paper")
    item, again, created = loaded.submit_item("new", "a new paper")
    assert not created and again == job and item == first
    with pytest.raises(ItemConflict, match="different content"):
        loaded.submit_item("new", "another paper")
    assert loaded.get_item("new").text == "a new paper"
    assert issubclass(ItemConflict, StoreError)


def test_posting_a_data_set_item_again_answers_with_a_finished_job(loaded) -> None:
    item, job, created = loaded.submit_item("i0", "first paper")
    assert not created and item.status == "warm" and job.status == "succeeded"
    assert loaded.submit_item("i0", "first paper")[1] == job


def test_concurrent_submits_of_one_id_create_it_once(loaded) -> None:
    outcomes, errors = run_at_once(lambda: loaded.submit_item("race", "the same text"), 8)
    assert not errors and len(outcomes) == 8
    assert sum(created for _, _, created in outcomes) == 1
    assert len({job.id for _, job, _ in outcomes}) == 1
    with loaded.session() as session:
        jobs = session.scalar(select(func.count()).where(Job.item_id == "race"))
    assert jobs == 1


def test_indices_are_assigned_once_and_never_shared(loaded) -> None:
    assert max(loaded.indexed_items()) == 1
    for name in ("a", "b"):
        loaded.submit_item(name, name)
    first = loaded.assign_index("a")
    assert loaded.assign_index("a") == first == 2
    assert loaded.assign_index("b") == 3 == max(loaded.indexed_items())
    assert loaded.item_ids([0, 2, 3, 99]) == {0: "i0", 2: "a", 3: "b"}
    with pytest.raises(UnknownIds):
        loaded.assign_index("ghost")


def test_simulated_interactions_are_replaced_as_a_whole(loaded) -> None:
    loaded.submit_item("new", "a new paper")
    assert loaded.replace_simulated("new", [("u0", 0.9), ("u1", 0.8)], "v1") == 2
    assert loaded.replace_simulated("new", [("u1", 0.6), ("u2", 0.7)], "v2") == 2  # redelivery
    assert loaded.simulated_for("new") == [("u2", 0.7), ("u1", 0.6)]
    assert loaded.simulated_detail("new") == [("u2", 0.7, None), ("u1", 0.6, None)]
    why = [{"merged": 1.5, "lm P(yes)": None}, {"merged": 0.25, "lm P(yes)": 0.875}]
    loaded.replace_simulated("new", [("u1", 0.6), ("u2", 0.5)], "v3", why)
    assert loaded.simulated_detail("new") == [("u1", 0.6, why[0]), ("u2", 0.5, why[1])]
    assert loaded.counts()["interactions"] == {"real": 1, "simulated": 2}
    with pytest.raises(UnknownIds, match="item ids: ghost"):
        loaded.replace_simulated("ghost", [("u0", 0.5)], "v1")


def test_real_interactions_dedup_and_reject_unknown_items_atomically(loaded) -> None:
    assert loaded.add_interactions([("u1", "i0"), ("u1", "i0"), ("u0", "i0")]) == 1
    assert loaded.add_interactions([("u1", "i0")]) == 0
    with pytest.raises(UnknownIds, match="unknown item ids: nope") as unknown:
        loaded.add_interactions([("u2", "i1"), ("u2", "nope"), ("ghost", "i1")])
    assert unknown.value.items == ["nope"]
    assert loaded.counts()["interactions"] == {"real": 2}
    assert loaded.seen_item_indices("u2") == ()  # the valid pair was not written either
    assert loaded.user_summary("ghost") is None  # nor the new user


def test_a_user_first_seen_in_an_interaction_is_added_outside_the_model(loaded) -> None:
    cut = datetime.now(UTC)
    assert loaded.add_interactions([("newcomer", "i1"), ("newcomer", "i0"), ("u2", "i1")]) == 3
    assert loaded.user_summary("newcomer") == (None, 2)
    assert loaded.user_summary("u0") == (0, 1)
    assert loaded.user_index("newcomer") is None
    assert loaded.seen_item_indices("newcomer") == (0, 1)
    assert loaded.counts()["users"] == 4
    # A training or refresh gives the newcomer the next row (here after row 9), at its
    # switch: the snapshot only proposes it.
    data = loaded.training_snapshot(since=cut, first_new_row=10)
    assert data.new_users == {"newcomer": 10}
    assert data.pairs[data.recent].tolist() == [[2, 1], [10, 0], [10, 1]]  # in row order
    assert loaded.user_index("newcomer") is None


def test_a_snapshot_reads_texts_from_the_row_it_is_asked_for(loaded) -> None:
    loaded.load_items([("i2", "third paper", 2, "warm")])
    texts = ["first paper", "second paper", "third paper"]
    assert loaded.training_snapshot().item_texts == texts
    assert loaded.training_snapshot(texts_from=1).item_texts == [None, *texts[1:]]
    assert loaded.training_snapshot(texts_from=3).item_texts == [None, None, None]


def test_users_past_a_versions_rows_are_folded_in_again(loaded) -> None:
    """A retraining on a data set without the users a refresh adopted: they have no row
    in it, so they go back outside the model rather than point past its tables."""
    loaded.add_interactions([("newcomer", "i1")])
    loaded.adopt_users({"newcomer": 3})
    assert loaded.user_index("newcomer") == 3
    loaded.release_rows_from(3)
    assert loaded.user_index("newcomer") is None
    assert loaded.user_summary("newcomer") == (None, 1)
    assert loaded.user_index("u2") == 2


def test_concurrent_interaction_posts_count_each_pair_once(store) -> None:
    """Overlapping batches in opposite orders: no deadlock, and every pair is new once."""
    store.load_users([(f"u{u}", u) for u in range(20)])
    store.load_items([(f"i{i}", f"paper {i}", i, "warm") for i in range(20)])
    pairs = [(f"u{u}", f"i{i}") for u in range(20) for i in range(20)]
    batches = iter([pairs, pairs[::-1]] * 4)
    new, errors = run_at_once(lambda: store.add_interactions(next(batches)), 8)
    assert not errors and sum(new) == len(pairs)
    assert store.counts()["interactions"] == {"real": len(pairs)}


def test_seen_items_are_the_real_ones_with_a_row(loaded) -> None:
    loaded.submit_item("unindexed", "posted, not warmed yet")
    loaded.add_interactions([("u1", "i1"), ("u1", "i0"), ("u1", "unindexed")])
    loaded.replace_simulated("i1", [("u2", 0.9)], "v1")
    assert loaded.seen_item_indices("u1") == (0, 1)
    assert loaded.seen_item_indices("u2") == ()  # a simulated interaction is not a view
    assert loaded.seen_item_indices("nobody") == ()
    # The remembered answer follows this store's writes at once...
    loaded.add_interactions([("u2", "i0")])
    assert loaded.seen_item_indices("u2") == (0,)
    index = loaded.assign_index("unindexed")
    assert loaded.seen_item_indices("u1") == (0, 1, index)


def test_every_users_seen_items_read_at_once_match_the_per_user_reads(loaded) -> None:
    loaded.add_interactions([("u1", "i1"), ("u1", "i0"), ("u2", "i1")])
    uncached = Store(loaded.url.render_as_string(hide_password=False), seen_ttl_s=0)
    assert loaded.remember_lookups() == 3
    for user in ("u0", "u1", "u2", "nobody"):
        assert loaded.seen_item_indices(user) == uncached.seen_item_indices(user)
    assert loaded.user_index("u2") == 2
    loaded.add_interactions([("u0", "i1")])  # writes still show at once
    assert loaded.seen_item_indices("u0") == (0, 1)
    uncached.dispose()


def test_remembered_lookups_need_no_database_read(loaded) -> None:
    """A server about to serve reads ids and seen items once: then a user's first query
    (a user with or without views) asks the database nothing."""
    loaded.add_interactions([("u1", "i1")])
    assert loaded.remember_lookups() == 2
    statements: list[str] = []
    sqlalchemy.event.listen(
        loaded.engine, "before_cursor_execute", lambda *args: statements.append(args[2])
    )
    assert [loaded.user_index(u) for u in ("u0", "u1", "u2")] == [0, 1, 2]
    assert loaded.item_ids([1, 0]) == {0: "i0", 1: "i1"}
    assert [loaded.seen_item_indices(u) for u in ("u0", "u1", "u2")] == [(0,), (1,), ()]
    assert statements == []
    loaded.user_index("nobody")  # the check itself: an unknown id is still looked up
    assert len(statements) == 1


def test_seen_items_written_by_another_process_show_within_the_ttl(url) -> None:
    now = [0.0]  # the reader's clock, moved by hand: a slow machine cannot expire it early
    reader, writer = Store(url, seen_ttl_s=300, clock=lambda: now[0]), Store(url)
    reader.migrate()
    reader.load_users([("u0", 0)])
    reader.load_items([("i0", "first paper", 0, "warm")])
    assert reader.seen_item_indices("u0") == ()
    writer.add_interactions([("u0", "i0")])
    now[0] = 299.0
    assert reader.seen_item_indices("u0") == ()  # remembered
    now[0] = 301.0
    assert reader.seen_item_indices("u0") == (0,)
    uncached = Store(url, seen_ttl_s=0)
    assert uncached.seen_item_indices("u0") == (0,)
    for store in (reader, writer, uncached):
        store.dispose()


def test_pending_items_are_those_accepted_and_not_settled(loaded) -> None:
    for name in ("a", "b", "c", "d", "e"):
        loaded.submit_item(name, name)
    loaded.set_item_status("b", "warming")
    loaded.set_item_status("c", "warm")
    loaded.set_item_status("d", "degraded", error="timeout")
    loaded.set_item_status("e", "failed", error="bad")
    # Failed items gave up their retries in the last run: the next start tries them again.
    assert loaded.pending_items() == ["a", "b", "d", "e"]


def test_bulk_loads_span_several_chunks_and_count(store) -> None:
    assert store.is_empty()
    n_users, n_items = 120, 60
    pairs = [(f"u{k % n_users}", f"i{k % n_items}") for k in range(CHUNK + 1000)]
    store.load_users([(f"u{u}", u) for u in range(n_users)])
    assert not store.is_empty()
    store.load_items([(f"i{i}", f"paper {i}", i, "warm") for i in range(n_items)])
    store.load_interactions(pairs + pairs[:10])  # repeats are dropped
    assert store.counts() == {
        "items": {"warm": n_items},
        "users": n_users,
        "interactions": {"real": len(set(pairs))},
    }
    assert store.user_index("u7") == 7 and store.user_index("ghost") is None
    assert max(store.indexed_items()) == n_items - 1
    assert store.get_item("i3").origin == "dataset"


def test_jobs_record_attempts_and_outcomes(loaded) -> None:
    job = loaded.create_job("refresh")
    loaded.start_job(job.id)
    loaded.start_job(job.id)
    loaded.finish_job(job.id, "failed", error="boom")
    done = loaded.get_job(job.id)
    assert (done.status, done.attempts, done.error, done.item_id) == ("failed", 2, "boom", None)
    assert done.finished_at >= done.started_at >= done.created_at
    loaded.finish_job(job.id, "succeeded", result={"rewarm": ["a"]})
    assert loaded.get_job(job.id).result == {"rewarm": ["a"]}
    assert loaded.get_job("nope") is None
    with pytest.raises(StoreError, match="no row 'nope'"):
        loaded.start_job("nope")


def test_every_job_kind_is_stored_and_nothing_else(loaded) -> None:
    """The kinds' CHECK constraint, rebuilt by migration 0006, holds on both backends."""
    for kind in ("warm_up", "refresh", "train"):
        assert loaded.get_job(loaded.create_job(kind).id).kind == kind
    with pytest.raises(sqlalchemy.exc.IntegrityError), loaded.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, kind, status, attempts, created_at) "
                "VALUES ('bad', 'bogus', 'queued', 0, CURRENT_TIMESTAMP)"
            )
        )
    with pytest.raises(sqlalchemy.exc.IntegrityError), loaded.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO jobs (id, kind, status, attempts, created_at) "
                "VALUES ('bad', 'train', 'bogus', 0, CURRENT_TIMESTAMP)"
            )
        )


def test_exactly_one_model_version_is_active(loaded) -> None:
    assert loaded.active_version() is None
    loaded.register_version("v1", "/models/v1", {"precision": 0.2})
    loaded.register_version("v2", "/models/v2")
    assert active_versions(loaded) == []
    loaded.activate("v1")
    loaded.activate("v2")
    assert active_versions(loaded) == ["v2"]
    assert loaded.active_version().path == "/models/v2"
    loaded.activate("v1")
    assert active_versions(loaded) == ["v1"]
    assert loaded.active_version().metrics == {"precision": 0.2}
    with pytest.raises(StoreError, match="not registered"):
        loaded.activate("v3")
    assert active_versions(loaded) == ["v1"]


def test_status_changes_keep_what_they_do_not_set(loaded) -> None:
    loaded.submit_item("new", "text")
    loaded.set_item_status("new", "degraded", error="timeout", index=7)
    loaded.set_item_status("new", "warm", model_version="v1", timings={"embed": 0.01})
    item = loaded.get_item("new")
    assert (item.status, item.index, item.model_version, item.error) == ("warm", 7, "v1", None)
    assert item.timings == {"embed": 0.01} and item.warmed_at is not None
    with pytest.raises(StatementError, match="not among the defined enum values"):
        loaded.set_item_status("new", "lukewarm")
    with pytest.raises(StoreError, match="no row 'ghost'"):
        loaded.set_item_status("ghost", "warm")


def test_times_are_aware_utc_and_ordered(loaded) -> None:
    before = datetime.now(UTC)
    loaded.submit_item("new", "text")
    loaded.set_item_status("new", "warm")
    job = loaded.latest_job("new")
    loaded.start_job(job.id)
    loaded.finish_job(job.id, "succeeded")
    loaded.register_version("v1", "/models/v1")
    loaded.activate("v1")
    item, job = loaded.get_item("new"), loaded.get_job(job.id)
    for stamp in (
        item.created_at,
        item.updated_at,
        item.warmed_at,
        job.created_at,
        job.started_at,
        job.finished_at,
        loaded.active_version().created_at,
    ):
        assert stamp.utcoffset() == timedelta(0)
        assert before <= stamp <= datetime.now(UTC)


def test_interaction_times_split_real_pairs_for_a_refresh(loaded) -> None:
    cut = datetime.now(UTC)
    loaded.add_interactions([("u2", "i1")])
    data = loaded.training_snapshot(since=cut)
    assert data.pairs[~data.recent].tolist() == [[0, 0]]
    assert data.pairs[data.recent].tolist() == [[2, 1]]
    assert not loaded.training_snapshot().recent.any()
    loaded.submit_item("new", "text")
    loaded.assign_index("new")
    loaded.replace_simulated("new", [("u1", 0.5)], "v1")
    assert loaded.simulated_interaction_indices().tolist() == [[1, 2]]
    assert loaded.indexed_items() == {0: ("i0", "dataset"), 1: ("i1", "dataset"), 2: ("new", "api")}


def test_a_relative_state_folder_is_recorded_absolute(tmp_path, monkeypatch) -> None:
    """Version folders are stored as paths: a process started elsewhere must find them."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(state_dir="relative-state")
    assert settings.state_dir == tmp_path / "relative-state"
    assert settings.resolved_database_url.endswith(str(tmp_path / "relative-state/llmins.sqlite"))
