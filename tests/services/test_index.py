"""The vector index in qdrant-client's local mode (the code a Qdrant server runs too)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.index import VectorIndex


@pytest.fixture
def index(tmp_path):
    index = VectorIndex(path=tmp_path / "qdrant")
    yield index
    index.close()


def random_version(index: VectorIndex, version: str, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    items, users = rng.normal(size=(60, 8)), rng.normal(size=(10, 8))
    cold = [{"cold": bool(i % 3 == 0)} for i in range(60)]
    index.build(version, "items", np.arange(60), items, cold)
    index.build(version, "users", np.arange(10), users)
    return items.astype(np.float32), users.astype(np.float32)


def test_top_is_numpys_ranking_with_exclusions_and_pools(index) -> None:
    items, users = random_version(index, "a", 0)
    index.activate("a")
    scores = items @ users[0]
    exclude = [int(i) for i in np.argsort(-scores)[:3]]
    hits = index.top("items", users[0], 5, exclude=exclude)
    expected = [int(i) for i in np.argsort(-scores) if int(i) not in exclude][:5]
    assert [i for i, _ in hits] == expected
    np.testing.assert_allclose([s for _, s in hits], scores[expected], rtol=1e-5)
    cold = index.top("items", users[0], 5, cold=True)
    assert all(i % 3 == 0 for i, _ in cold)
    assert all(i % 3 != 0 for i, _ in index.top("items", users[0], 5, cold=False))


def test_the_alias_switch_serves_the_new_version_and_drops_old_ones(index) -> None:
    _, users_a = random_version(index, "a", 0)
    index.activate("a")
    _, users_b = random_version(index, "b", 1)
    # Built but not active: queries still see version a.
    np.testing.assert_allclose(index.vectors("users", [3])[0], users_a[3], rtol=1e-6)
    index.activate("b")
    assert index.active_version("users") == "b"
    np.testing.assert_allclose(index.vectors("users", [3])[0], users_b[3], rtol=1e-6)
    random_version(index, "c", 2)
    index.activate("c")
    names = {c.name for c in index.client.get_collections().collections}
    assert names == {f"llmins-{k}-{v}" for k in ("items", "users") for v in ("b", "c")}


def test_upserts_go_to_the_served_collection(index) -> None:
    _, users = random_version(index, "a", 0)
    index.activate("a")
    index.upsert("items", [100], 10 * users[:1], [{"cold": True}])
    assert index.top("items", users[0], 1)[0][0] == 100
    assert index.count("items") == 61


def test_vectors_come_in_the_order_asked_and_name_missing_ids(index) -> None:
    items, _ = random_version(index, "a", 0)
    index.activate("a")
    np.testing.assert_allclose(index.vectors("items", [5, 1]), items[[5, 1]], rtol=1e-6)
    with pytest.raises(KeyError, match="999"):
        index.vectors("items", [1, 999])


def test_concurrent_queries_and_writes_do_not_fail(index) -> None:
    _, users = random_version(index, "a", 0)
    index.activate("a")
    errors: list[Exception] = []

    def query() -> None:
        try:
            for _ in range(30):
                index.top("items", users[1], 10, exclude=[1, 2])
        except Exception as error:  # collected and asserted below
            errors.append(error)

    def write() -> None:
        try:
            for step in range(30):
                index.upsert("items", [200 + step], users[:1], [{"cold": True}])
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=query) for _ in range(8)] + [threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert index.count("items") == 90


def test_a_reopened_folder_keeps_the_data(tmp_path) -> None:
    index = VectorIndex(path=tmp_path / "qdrant")
    items, _ = random_version(index, "a", 0)
    index.activate("a")
    index.close()
    reopened = VectorIndex(path=tmp_path / "qdrant")
    try:
        assert reopened.active_version("items") == "a"
        np.testing.assert_allclose(reopened.vectors("items", [7])[0], items[7], rtol=1e-6)
    finally:
        reopened.close()


def test_one_source_of_vectors_is_required(tmp_path) -> None:
    with pytest.raises(ValueError, match="not both"):
        VectorIndex()
    with pytest.raises(ValueError, match="not both"):
        VectorIndex(url="http://localhost:6333", path=tmp_path)
