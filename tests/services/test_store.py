"""The relational store, on SQLite and on the real PostgreSQL (127.0.0.1:5432).

Each PostgreSQL test gets a schema of its own (dropped afterwards). Set
``LLMINS_TEST_POSTGRES_URL`` to another server's URL; the tests fail, never skip, when it
cannot be reached: a skipped store test would read as a pass in CI.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy

from services.store import ItemConflict, Store, StoreError, UnknownIds

POSTGRES_URL = os.environ.get(
    "LLMINS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'store.sqlite'}")
        store.create_all()
        yield store
        store.dispose()
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    store = Store(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    store.create_all()
    yield store
    store.dispose()
    with admin.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def loaded(store) -> Store:
    """Three users, two data-set items, one real interaction."""
    store.load_users([("u0", 0), ("u1", 1), ("u2", 2)])
    store.load_items([("i0", "first paper", 0, "warm"), ("i1", "second paper", 1, "warm")])
    store.load_interactions([("u0", "i0")])
    return store


def test_a_new_item_is_stored_with_a_queued_job(loaded) -> None:
    item, job, created = loaded.submit_item("new", "a new paper")
    assert created and item.status == "queued" and item.origin == "api"
    assert job.status == "queued" and job.item_id == "new" and job.kind == "warm_up"
    assert loaded.pending_items() == ["new"]
    assert loaded.get_item("new").created_at.tzinfo is not None


def test_posting_again_is_idempotent_and_other_content_conflicts(loaded) -> None:
    _, job, _ = loaded.submit_item("new", "a new paper")
    item, again, created = loaded.submit_item("new", "a new paper")
    assert not created and again.id == job.id and item.text == "a new paper"
    with pytest.raises(ItemConflict, match="different content"):
        loaded.submit_item("new", "another paper")


def test_concurrent_submits_of_one_id_create_it_once(loaded) -> None:
    outcomes, errors = [], []

    def submit() -> None:
        try:
            outcomes.append(loaded.submit_item("race", "the same text"))
        except Exception as error:  # any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(created for _, _, created in outcomes) == 1
    assert len({job.id for _, job, _ in outcomes}) == 1


def test_indices_are_assigned_once_and_never_shared(loaded) -> None:
    for name in ("a", "b"):
        loaded.submit_item(name, name)
    first = loaded.assign_index("a")
    assert loaded.assign_index("a") == first == 2
    assert loaded.assign_index("b") == 3
    assert loaded.item_ids([0, 2, 3, 99]) == {0: "i0", 2: "a", 3: "b"}


def test_simulated_interactions_are_replaced_as_a_whole(loaded) -> None:
    loaded.submit_item("new", "a new paper")
    loaded.replace_simulated("new", [("u0", 0.9), ("u1", 0.8)], "v1")
    loaded.replace_simulated("new", [("u2", 0.7), ("u1", 0.6)], "v1")  # a redelivery
    assert loaded.simulated_for("new") == [("u2", 0.7), ("u1", 0.6)]
    assert loaded.counts()["interactions"] == {"real": 1, "simulated": 2}


def test_real_interactions_dedup_and_reject_unknown_ids_atomically(loaded) -> None:
    assert loaded.add_interactions([("u1", "i0"), ("u1", "i0"), ("u0", "i0")]) == 1
    with pytest.raises(UnknownIds, match="item ids: nope"):
        loaded.add_interactions([("u2", "i1"), ("u2", "nope")])
    with pytest.raises(UnknownIds, match="user ids: ghost"):
        loaded.add_interactions([("ghost", "i1")])
    assert loaded.counts()["interactions"] == {"real": 2}
    assert sorted(loaded.seen_item_indices("u1")) == [0]


def test_index_pairs_split_at_a_time(loaded) -> None:
    cut = datetime.now(UTC)
    loaded.add_interactions([("u2", "i1")])
    old, new = loaded.real_interaction_indices(since=cut)
    assert old.tolist() == [[0, 0]] and new.tolist() == [[2, 1]]
    loaded.submit_item("new", "text")
    loaded.assign_index("new")
    loaded.replace_simulated("new", [("u1", 0.5)], "v1")
    assert loaded.simulated_interaction_indices().tolist() == [[1, 2]]
    assert loaded.indexed_items() == {0: ("i0", "dataset"), 1: ("i1", "dataset"), 2: ("new", "api")}


def test_jobs_record_attempts_and_outcomes(loaded) -> None:
    job = loaded.create_job("refresh")
    loaded.start_job(job.id)
    loaded.start_job(job.id)
    loaded.finish_job(job.id, "failed", error="boom")
    done = loaded.get_job(job.id)
    assert (done.status, done.attempts, done.error) == ("failed", 2, "boom")
    assert done.finished_at >= done.started_at >= done.created_at


def test_exactly_one_model_version_is_active(loaded) -> None:
    assert loaded.active_version() is None
    loaded.register_version("v1", "/models/v1", {"precision": 0.2})
    loaded.register_version("v2", "/models/v2")
    loaded.activate("v1")
    loaded.activate("v2")
    assert loaded.active_version().id == "v2"
    with pytest.raises(StoreError, match="not registered"):
        loaded.activate("v3")
    assert loaded.active_version().id == "v2"


def test_status_changes_keep_what_they_do_not_set(loaded) -> None:
    loaded.submit_item("new", "text")
    loaded.set_item_status("new", "warming", index=7)
    loaded.set_item_status("new", "warm", model_version="v1", timings={"embed": 0.01})
    item = loaded.get_item("new")
    assert (item.status, item.index, item.model_version) == ("warm", 7, "v1")
    assert item.timings == {"embed": 0.01} and item.warmed_at is not None
    assert loaded.pending_items() == []
