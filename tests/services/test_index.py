"""The vector index in qdrant-client's local mode, and on a Qdrant server where one is given.

Data are small and random, so every expected answer is computed exactly with numpy.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from services.index import PointQuery, VectorIndex, item_payload
from services.ranking import TopQuery

N_ITEMS, N_USERS, DIM = 60, 10, 8


@pytest.fixture(params=["in memory", "qdrant queries", "qdrant server"])
def index(request, tmp_path):
    """Local mode both ways: served from memory (the default), and Qdrant's own queries,
    which is also the code path a server runs; and a real server where
    ``LLMINS_TEST_QDRANT_URL`` names one (no package registry carries a Qdrant server, so
    this project's machines skip it)."""
    if request.param == "qdrant server":
        url = os.environ.get("LLMINS_TEST_QDRANT_URL")
        if not url:
            pytest.skip("no Qdrant server: set LLMINS_TEST_QDRANT_URL to run the server path")
        # A prefix of its own per test: the server's other collections are never touched.
        index = VectorIndex(url=url, prefix=f"test{uuid.uuid4().hex[:10]}")
        yield index
        for name in index.collections():
            index._client.delete_collection(name)
        index.close()
        return
    index = VectorIndex(path=tmp_path / "qdrant", in_memory=request.param == "in memory")
    yield index
    index.close()


def build_version(index: VectorIndex, version: str, seed: int) -> dict[str, np.ndarray]:
    """Build all three kinds of ``version``; every third item is cold."""
    rng = np.random.default_rng(seed)
    data = {
        "items": rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
        "users": rng.normal(size=(N_USERS, DIM)).astype(np.float32),
        "content": rng.normal(size=(N_ITEMS, DIM)).astype(np.float32),
    }
    cold = [{"cold": is_cold(i)} for i in range(N_ITEMS)]
    index.build(version, "items", np.arange(N_ITEMS), data["items"], cold)
    index.build(version, "users", np.arange(N_USERS), data["users"])
    index.build(version, "content", np.arange(N_ITEMS), data["content"])
    return data


def is_cold(item: int) -> bool:
    return item % 3 == 0


def best(scores: np.ndarray, k: int, keep: Callable[[int], bool] = lambda i: True) -> list[int]:
    """numpy's answer: the ``k`` best ids by score among those ``keep`` accepts."""
    return [int(i) for i in np.argsort(-scores, kind="stable") if keep(int(i))][:k]


def ids_and_scores(hits: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    return [i for i, _ in hits], [s for _, s in hits]


def test_top_is_numpys_inner_product_ranking(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    scores = data["items"] @ data["users"][0]
    ids, found = ids_and_scores(index.top("items", data["users"][0], 7))
    assert ids == best(scores, 7)
    np.testing.assert_allclose(found, scores[ids], rtol=1e-5)


def test_top_leaves_out_excluded_ids(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    scores = data["items"] @ data["users"][0]
    exclude = np.array(best(scores, 4))  # the four best: a real change of the answer
    ids, found = ids_and_scores(index.top("items", data["users"][0], 5, exclude=exclude))
    assert ids == best(scores, 5, lambda i: i not in exclude)
    np.testing.assert_allclose(found, scores[ids], rtol=1e-5)


@pytest.mark.parametrize("cold", [True, False])
def test_top_ranks_within_the_cold_or_warm_pool(index, cold: bool) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    scores = data["items"] @ data["users"][2]
    exclude = best(scores, 2, lambda i: is_cold(i) == cold)
    hits = index.top("items", data["users"][2], 6, exclude=exclude, cold=cold)
    expected = best(scores, 6, lambda i: is_cold(i) == cold and i not in exclude)
    assert ids_and_scores(hits)[0] == expected


def test_a_batch_of_queries_gets_each_its_own_answer(index) -> None:
    """Mixed k, pools and left-out ids in one pass: each answer is the query's exact top."""
    data = build_version(index, "a", 0)
    index.activate("a")
    queries = [
        TopQuery(data["users"][0], 7),
        TopQuery(data["users"][1], 3, exclude=[1, 2, 3], cold=True),
        TopQuery(data["users"][2], 5, cold=False),
        TopQuery(data["users"][0], 2, exclude=best(data["items"] @ data["users"][0], 2)),
    ]
    answers = index.top_many("items", queries)
    assert len(answers) == len(queries)
    for query, answer in zip(queries, answers, strict=True):
        scores = data["items"] @ query.vector

        def allowed(i: int, query: TopQuery = query) -> bool:
            in_pool = query.cold is None or is_cold(i) == query.cold
            return in_pool and i not in query.exclude

        ids, found = ids_and_scores(answer)
        assert ids == best(scores, query.k, allowed)
        np.testing.assert_allclose(found, scores[ids], rtol=1e-5)
    assert index.top_many("items", []) == []


def test_remembered_rankings_answer_as_a_full_ranking_does_through_writes(index) -> None:
    """A keyed query is answered from its remembered ranking plus what changed since: the
    answers must equal the full ranking's (the unkeyed query) through new items, rewritten
    items, left-out ids, both pools and a refreeze after many writes."""
    data = build_version(index, "a", 0)
    index.activate("a")
    rng = np.random.default_rng(5)
    user = data["users"][1]

    def same_answers(k: int, exclude=(), cold=None) -> None:
        keyed = TopQuery(user, k, tuple(exclude), cold, key=1)
        full = TopQuery(user, k, tuple(exclude), cold)
        first, again, reference = index.top_many("items", [keyed, keyed, full])
        for answer in (first, again):  # scores to float32 rounding: products differ in order
            assert ids_and_scores(answer)[0] == ids_and_scores(reference)[0]
            np.testing.assert_allclose(
                ids_and_scores(answer)[1], ids_and_scores(reference)[1], rtol=1e-5, atol=1e-5
            )

    same_answers(10)
    same_answers(5, cold=True)
    top = [i for i, _ in index.top("items", user, 30)]
    index.upsert("items", [N_ITEMS + 1], 3 * user[None, :], [{"cold": True}])  # new, best
    same_answers(10)
    same_answers(5, cold=True)
    index.upsert("items", [top[0]], -user[None, :], [{"cold": False}])  # the best, now worst
    index.upsert("items", [top[20]], 2 * user[None, :], [{"cold": False}])  # promoted
    same_answers(10, exclude=top[1:6])
    same_answers(5, cold=False, exclude=top[1:30])
    same_answers(N_ITEMS + 5)  # more than the remembered rows: the whole collection
    for batch in range(3):  # enough new items to freeze everything again
        ids = np.arange(1000 * (batch + 2), 1000 * (batch + 3))
        vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
        index.upsert("items", ids, vectors, [{"cold": True}] * len(ids))
        same_answers(20, exclude=top[:3])
        same_answers(20, cold=True)


def test_deleted_points_leave_every_answer_remembered_ones_included(index) -> None:
    """A withdrawn item's point: gone from keyed (remembered) and unkeyed answers in every
    pool, from ``vectors``, and still gone after a refreeze; numpy's ranking without it."""
    data = build_version(index, "a", 0)
    index.activate("a")
    user = data["users"][2]
    keyed = TopQuery(user, 10, (), None, key=2)
    before = [i for i, _ in index.top_many("items", [keyed])[0]]
    gone = [before[0], before[3], next(i for i in before if is_cold(i))]
    index.delete("items", gone)
    scores = data["items"] @ user
    for cold in (None, True, False):
        keep = lambda i, cold=cold: i not in gone and (cold is None or is_cold(i) == cold)  # noqa: E731
        expected = best(scores, 10, keep)
        query = TopQuery(user, 10, (), cold, key=2)
        for answer in index.top_many("items", [query, replace(query, key=None)]):
            assert [i for i, _ in answer] == expected
    with pytest.raises(KeyError):
        index.vectors("items", [gone[0]])
    rng = np.random.default_rng(9)
    ids = np.arange(1000, 2100)  # enough new rows to freeze every row again
    index.upsert("items", ids, rng.normal(size=(len(ids), DIM)).astype(np.float32))
    assert not set(gone) & {i for i, _ in index.top("items", user, N_ITEMS + len(ids))}


def test_a_category_restricts_answers_to_the_points_that_carry_it(index) -> None:
    """Every fifth item is in "red", every seventh in "blue" too; keyed (remembered) and
    unkeyed queries give numpy's ranking among them, through a rewrite of the labels."""
    data = build_version(index, "a", 0)
    index.activate("a")

    def labels(item: int) -> list[str]:
        return [name for name, step in (("red", 5), ("blue", 7)) if item % step == 0]

    ids = np.arange(N_ITEMS)
    payloads = [item_payload(is_cold(i), labels(i)) for i in ids]
    index.upsert("items", ids, data["items"], payloads)
    user = data["users"][3]
    scores = data["items"] @ user
    index.top_many("items", [TopQuery(user, 5, key=3)])  # a remembered ranking exists
    red = {i for i in range(N_ITEMS) if labels(i)[:1] == ["red"]}
    for category, cold in (("red", None), ("blue", None), ("red", True), ("green", None)):
        members = {i for i in range(N_ITEMS) if category in labels(i)}
        keep = lambda i, m=members, c=cold: i in m and (c is None or is_cold(i) == c)  # noqa: E731
        query = TopQuery(user, 4, (), cold, key=3, category=category)
        for answer in index.top_many("items", [query, replace(query, key=None)]):
            assert [i for i, _ in answer] == best(scores, 4, keep)
    moved = sorted(red)[0]
    index.upsert("items", [moved], data["items"][[moved]], [item_payload(False, ["green"])])
    found = [i for i, _ in index.top("items", user, N_ITEMS, category="green")]
    assert found == [moved]
    assert moved not in [i for i, _ in index.top("items", user, N_ITEMS, category="red")]


def test_rankings_remembered_for_every_user_answer_as_full_rankings(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    ranked = index.remember_rankings(batch=3)
    assert ranked == (N_USERS if index._mirrored else 0)  # the Qdrant path has no memory
    for user in range(N_USERS):
        seen = tuple(best(data["items"] @ data["users"][user], 3))
        keyed = TopQuery(data["users"][user], 10, seen, key=user)
        full = TopQuery(data["users"][user], 10, seen)
        answer, reference = index.top_many("items", [keyed, full])
        assert ids_and_scores(answer)[0] == ids_and_scores(reference)[0]


def test_top_for_points_ranks_by_their_stored_vectors_and_answers_at_once_when_remembered(
    index,
) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    queries = [PointQuery(1, 5, exclude=(2, 3)), PointQuery(4, 3, cold=True)]
    expected = [
        index.top("items", data["users"][1], 5, exclude=(2, 3)),
        index.top("items", data["users"][4], 3, cold=True),
    ]
    hits, version = index.top_for("items", "users", queries)
    assert version == "a"
    assert [ids_and_scores(h)[0] for h in hits] == [ids_and_scores(e)[0] for e in expected]
    at_once = index.top_for("items", "users", queries, wait=False)
    if not index._mirrored:
        assert at_once is None  # a Qdrant query is never at hand
        return
    # The first answers were remembered: the same again, without waiting.
    assert at_once is not None and at_once[1] == "a"
    assert [ids_and_scores(h)[0] for h in at_once[0]] == [ids_and_scores(e)[0] for e in expected]
    # Not at hand: a point whose ranking was never made, or an index another thread holds.
    assert index.top_for("items", "users", [PointQuery(7, 5)], wait=False) is None
    with index._memory:
        assert index.top_for("items", "users", queries, wait=False) is None


def test_a_write_that_refreezes_the_items_ranks_for_every_user_again(index) -> None:
    """Rankings remembered before a refreeze are dropped by it; the write that froze must
    leave every user's ranking remembered again, and exact."""
    data = build_version(index, "a", 0)
    index.activate("a")
    if not index._mirrored:
        pytest.skip("only in-memory copies remember rankings")
    index.remember_rankings(batch=3)
    every_user = [PointQuery(user, 10) for user in range(N_USERS)]
    assert index.top_for("items", "users", every_user, wait=False) is not None
    for cold in (False, True):  # every pool is ranked ahead, not only "all"
        pool = [PointQuery(user, 10, cold=cold) for user in range(N_USERS)]
        assert index.top_for("items", "users", pool, wait=False) is not None
    rng = np.random.default_rng(3)
    ids = np.arange(1000, 2100)  # past the 1,024 rows written that freeze again
    vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
    index.upsert("items", ids, vectors, [{"cold": True}] * len(ids))
    at_once = index.top_for("items", "users", every_user, wait=False)
    assert at_once is not None
    items = np.concatenate([data["items"], vectors])
    item_ids = np.concatenate([np.arange(N_ITEMS), ids])
    for user, hits in enumerate(at_once[0]):
        expected = item_ids[best(items @ data["users"][user], 10)].tolist()
        assert ids_and_scores(hits)[0] == expected


def test_queries_from_memory_go_on_while_a_write_waits_for_qdrant(index, monkeypatch) -> None:
    """A write holds the client while Qdrant commits to disk; in-memory queries must not
    wait for it, and see the write once it returns."""
    data = build_version(index, "a", 0)
    index.activate("a")
    if not index._mirrored:
        pytest.skip("Qdrant's own queries go through the client, as they must")
    user = data["users"][0]
    writing, release = threading.Event(), threading.Event()
    write_to_qdrant = index._client.upsert

    def slow_upsert(*args, **kwargs):
        writing.set()
        release.wait(30)
        return write_to_qdrant(*args, **kwargs)

    monkeypatch.setattr(index._client, "upsert", slow_upsert)
    writer = threading.Thread(
        target=index.upsert, args=("items", [N_ITEMS + 1], 5 * user[None, :], [{"cold": True}])
    )
    writer.start()
    try:
        assert writing.wait(10)
        before = index.top("items", user, 3)
        assert writer.is_alive()  # answered while the write was still in Qdrant's hands
        assert N_ITEMS + 1 not in ids_and_scores(before)[0]
    finally:
        release.set()
        writer.join(30)
    assert index.top("items", user, 1)[0][0] == N_ITEMS + 1


def test_content_is_ranked_by_cosine_and_stored_unit_length(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    unit = data["content"] / np.linalg.norm(data["content"], axis=1, keepdims=True)
    query = 5 * data["content"][4]  # scale must not matter under cosine
    cosines = unit @ (query / np.linalg.norm(query))
    ids, found = ids_and_scores(index.top("content", query, 5, exclude=[4]))
    assert ids == best(cosines, 5, lambda i: i != 4)
    np.testing.assert_allclose(found, cosines[ids], rtol=1e-5)
    np.testing.assert_allclose(index.vectors("content", [4, 9]), unit[[4, 9]], rtol=1e-5)


def test_only_items_have_a_cold_pool(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    with pytest.raises(ValueError, match="cold pool"):
        index.top("users", data["users"][0], 3, cold=True)


def test_upserts_go_to_the_served_collection_only(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    build_version(index, "b", 1)  # built, not yet served
    winner = 10 * data["users"][:1]
    index.upsert("items", [100], winner, [{"cold": True}])
    assert index.top("items", data["users"][0], 1)[0][0] == 100
    assert index.top("items", data["users"][0], 1, cold=False)[0][0] != 100
    assert index.count("items") == N_ITEMS + 1
    index.activate("b")
    assert index.count("items") == N_ITEMS  # b was built without it: the refresh rewarms


def test_upserts_replace_a_point_with_the_same_id(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    index.upsert("items", [7], data["items"][:1] + 1, [{"cold": True}])
    np.testing.assert_allclose(index.vectors("items", [7])[0], data["items"][0] + 1, rtol=1e-6)
    assert index.count("items") == N_ITEMS


def test_the_alias_switch_serves_the_new_version_and_keeps_the_previous_one(index) -> None:
    assert index.active_version("users") is None
    a = build_version(index, "a", 0)
    index.activate("a")
    b = build_version(index, "b", 1)
    # Built but not active: queries still see version a.
    assert index.active_version("users") == "a"
    np.testing.assert_allclose(index.vectors("users", [3])[0], a["users"][3], rtol=1e-6)
    assert index.top("items", a["users"][0], 1)[0][0] == best(a["items"] @ a["users"][0], 1)[0]
    index.activate("b")
    assert {index.active_version(kind) for kind in ("items", "users", "content")} == {"b"}
    np.testing.assert_allclose(index.vectors("users", [3])[0], b["users"][3], rtol=1e-6)
    assert index.top("items", b["users"][0], 1)[0][0] == best(b["items"] @ b["users"][0], 1)[0]
    build_version(index, "c", 2)
    index.activate("c")
    kinds = ("items", "users", "content")
    assert index.collections() == {f"{index.prefix}-{k}-{v}" for k in kinds for v in ("b", "c")}


def test_switching_some_kinds_leaves_the_others_alone(index) -> None:
    build_version(index, "a", 0)
    index.activate("a")
    for version, seed in (("b", 1), ("c", 2)):
        build_version(index, version, seed)
        index.activate(version, kinds=("items", "users"))
    assert index.active_version("items") == "c"
    assert index.active_version("content") == "a"
    # content-a is served, content-b/-c were never switched to: none of them is dropped.
    assert {f"{index.prefix}-content-{v}" for v in "abc"} <= index.collections()
    assert f"{index.prefix}-items-a" not in index.collections()


def test_reactivating_the_served_version_keeps_the_rollback(index) -> None:
    build_version(index, "a", 0)
    index.activate("a")
    build_version(index, "b", 1)
    index.activate("b")
    index.activate("b")
    assert f"{index.prefix}-items-a" in index.collections()


def test_activating_an_unbuilt_version_changes_nothing(index) -> None:
    build_version(index, "a", 0)
    index.activate("a")
    index.build("b", "items", np.arange(3), np.ones((3, DIM)), [{"cold": False}] * 3)
    with pytest.raises(ValueError, match="build .*llmins-users-b"):
        index.activate("b")
    assert index.active_version("items") == "a"
    assert index.count("items") == N_ITEMS


def test_the_served_collection_is_never_rebuilt(index) -> None:
    build_version(index, "a", 0)
    index.activate("a")
    with pytest.raises(ValueError, match="served"):
        index.build("a", "users", np.arange(2), np.ones((2, DIM)))
    assert index.count("users") == N_USERS


def test_a_failed_build_of_a_version_can_be_redone(index) -> None:
    index.build("a", "users", np.arange(4), np.ones((4, DIM)))
    index.build("a", "users", np.arange(2), np.zeros((2, DIM)))
    index.activate("a", kinds=("users",))
    assert index.count("users") == 2


def test_builds_upload_in_batches(index) -> None:
    vectors = np.random.default_rng(3).normal(size=(25, DIM))
    index.build("a", "users", np.arange(25), vectors, batch=4, progress=True)
    index.activate("a", kinds=("users",))
    assert index.count("users") == 25
    np.testing.assert_allclose(index.vectors("users", [24, 0]), vectors[[24, 0]], rtol=1e-6)


def test_vectors_come_in_the_order_asked_and_name_missing_ids(index) -> None:
    data = build_version(index, "a", 0)
    index.activate("a")
    order = [5, 1, 42, 5]
    np.testing.assert_allclose(index.vectors("items", order), data["items"][order], rtol=1e-6)
    with pytest.raises(KeyError, match="999"):
        index.vectors("items", [1, 999])


def test_malformed_points_are_refused_before_writing(index) -> None:
    build_version(index, "a", 0)
    index.activate("a")
    with pytest.raises(ValueError, match="finite"):
        index.upsert("items", [100], np.full((1, DIM), np.nan), [{"cold": True}])
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.upsert("items", [100, 101], np.ones((1, DIM)), [{"cold": True}] * 2)
    assert index.count("items") == N_ITEMS


@pytest.fixture
def frequent_thread_switches():
    """Switch threads every 10 µs instead of 5 ms, so races show up in a short test."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(interval)


def test_concurrent_queries_and_writes_do_not_fail(index, frequent_thread_switches) -> None:
    # Without the lock, local mode's searches read arrays that an upsert is growing and
    # fail (numpy broadcast and index errors): this test catches that.
    data = build_version(index, "a", 0)
    index.activate("a")
    errors: list[Exception] = []
    writes = 40

    def collect(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except Exception as error:  # collected and asserted in the test's thread
                errors.append(error)

        return run

    def query() -> None:
        for _ in range(40):
            hits = index.top("items", data["users"][1], 10, exclude=[1, 2], cold=False)
            assert len(hits) == 10

    def write() -> None:
        for step in range(writes):
            index.upsert("items", [200 + step], data["users"][:1], [{"cold": True}])

    threads = [threading.Thread(target=collect(query)) for _ in range(8)]
    threads.append(threading.Thread(target=collect(write)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert index.count("items") == N_ITEMS + writes


def test_a_reopened_folder_keeps_the_data(tmp_path) -> None:
    index = VectorIndex(path=tmp_path / "qdrant")
    data = build_version(index, "a", 0)
    index.activate("a")
    index.upsert("items", [100], data["users"][:1], [{"cold": True}])
    index.close()
    reopened = VectorIndex(path=tmp_path / "qdrant")
    try:
        assert reopened.active_version("items") == "a"
        np.testing.assert_allclose(reopened.vectors("items", [7])[0], data["items"][7], rtol=1e-6)
        np.testing.assert_allclose(reopened.vectors("items", [100])[0], data["users"][0])
        assert reopened.count("items") == N_ITEMS + 1
    finally:
        reopened.close()


def test_one_source_of_vectors_is_required(tmp_path) -> None:
    with pytest.raises(ValueError, match="not both"):
        VectorIndex()
    with pytest.raises(ValueError, match="not both"):
        VectorIndex(url="http://localhost:6333", path=tmp_path)
