"""The paper's cold-start splitter: fractions, no leaks, no lost pairs, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.data.dataset import SPLIT_NAMES, ColdStartDataset
from models.data.split import RawInteractions, hold_out_items, refit_split, split_cold_start

N_USERS, N_ITEMS, N_SILENT = 60, 300, 10  # items 0..N_SILENT-1 get no interaction


def make_interactions(seed: int = 1, n: int = 6000) -> np.ndarray:
    """Random (user, item) pairs over items N_SILENT.., with some exact duplicates appended."""
    rng = np.random.default_rng(seed)
    pairs = np.stack([rng.integers(0, N_USERS, n), rng.integers(N_SILENT, N_ITEMS, n)], axis=1)
    return np.concatenate([pairs, pairs[:500]])


def split(interactions: np.ndarray, seed: int = 0, **kwargs: object) -> ColdStartDataset:
    texts = [f"item {i}" for i in range(N_ITEMS)]
    return split_cold_start("toy", "item", N_USERS, texts, interactions, seed, **kwargs)


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, pairs.tolist()))


@pytest.fixture(scope="module")
def interactions() -> np.ndarray:
    return make_interactions()


@pytest.fixture(scope="module")
def dataset(interactions: np.ndarray) -> ColdStartDataset:
    return split(interactions)


def test_no_interaction_lost_or_duplicated(
    interactions: np.ndarray, dataset: ColdStartDataset
) -> None:
    parts = np.concatenate([dataset.splits[part] for part in SPLIT_NAMES])
    assert len(as_set(parts)) == len(parts), "a pair is in two parts or twice in one"
    assert as_set(parts) == as_set(interactions)
    assert len(parts) == len(np.unique(interactions, axis=0))


def test_parts_are_sorted_by_user_then_item(dataset: ColdStartDataset) -> None:
    for part in SPLIT_NAMES:
        pairs = dataset.splits[part]
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        np.testing.assert_array_equal(order, np.arange(len(pairs)), err_msg=part)


def test_twenty_percent_of_items_are_cold_split_in_halves(dataset: ColdStartDataset) -> None:
    n_interacted = N_ITEMS - N_SILENT
    n_val, n_test = len(dataset.cold_val_items), len(dataset.cold_test_items)
    assert abs(n_val + n_test - 0.2 * n_interacted) <= 1
    assert abs(n_val - n_test) <= 1
    assert len(dataset.warm_items) == n_interacted - n_val - n_test


def test_cold_items_have_all_their_interactions_in_one_cold_part(
    interactions: np.ndarray, dataset: ColdStartDataset
) -> None:
    warm = np.concatenate([dataset.splits[part] for part in SPLIT_NAMES[:3]])
    for stage in ("val", "test"):
        cold = dataset.cold_items(stage)
        assert not np.isin(warm[:, 1], cold).any()
        expected = as_set(interactions[np.isin(interactions[:, 1], cold)])
        assert as_set(dataset.splits[f"cold_{stage}"]) == expected


def test_warm_interactions_split_eight_one_one() -> None:
    dataset = split(make_interactions(n=60_000))
    sizes = np.array([len(dataset.splits[part]) for part in SPLIT_NAMES[:3]])
    np.testing.assert_allclose(sizes / sizes.sum(), [0.8, 0.1, 0.1], atol=0.01)


def test_every_warm_item_has_a_training_interaction() -> None:
    # One interaction per item: without the guarantee ~20% of warm items would have none.
    items = np.arange(N_SILENT, N_ITEMS)
    sparse = np.stack([items % N_USERS, items], axis=1)
    dataset = split(sparse)
    warm = np.unique(np.concatenate([dataset.splits[part][:, 1] for part in SPLIT_NAMES[:3]]))
    np.testing.assert_array_equal(dataset.warm_items, warm)
    assert len(dataset.splits["warm_val"]) + len(dataset.splits["warm_test"]) == 0


def test_items_without_interactions_keep_their_text_but_no_part(
    dataset: ColdStartDataset,
) -> None:
    assert dataset.n_items == N_ITEMS
    assert dataset.item_texts[0] == "item 0"
    for part in SPLIT_NAMES:
        assert (dataset.splits[part][:, 1] >= N_SILENT).all(), part


def test_same_seed_same_split_other_seed_other_split(interactions: np.ndarray) -> None:
    first, again, other = split(interactions, 7), split(interactions, 7), split(interactions, 8)
    assert first.fingerprint == again.fingerprint
    assert not np.array_equal(first.cold_test_items, other.cold_test_items)
    assert not np.array_equal(first.splits["warm_val"], other.splits["warm_val"])


def test_split_does_not_depend_on_input_order(interactions: np.ndarray) -> None:
    shuffled = np.random.default_rng(3).permutation(interactions)
    assert split(shuffled).fingerprint == split(interactions).fingerprint


def test_custom_fractions() -> None:
    dataset = split(make_interactions(), cold_fraction=0.5, warm_ratios=(1, 1, 0))
    n_cold = len(dataset.cold_val_items) + len(dataset.cold_test_items)
    assert n_cold == (N_ITEMS - N_SILENT) // 2
    assert len(dataset.splits["warm_test"]) == 0
    assert abs(len(dataset.splits["warm_train"]) - len(dataset.splits["warm_val"])) < 0.1 * len(
        dataset.splits["warm_train"]
    )


@pytest.mark.parametrize(
    ("pairs", "kwargs", "match"),
    [
        ([[0, N_ITEMS]], {}, "exceed"),
        ([[N_USERS, 0]], {}, "exceed"),
        ([[-1, 0]], {}, "negative"),
        ([[0, 0]], {"cold_fraction": 1.0}, "cold_fraction"),
        ([[0, 0]], {"warm_ratios": (0.8, 0.2)}, "warm_ratios"),
        ([[0, 0]], {"warm_ratios": (1, -1, 1)}, "warm_ratios"),
    ],
)
def test_invalid_input_is_rejected(pairs: list, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split(np.array(pairs), **kwargs)


def test_raw_interactions_split_uses_the_splitter(interactions: np.ndarray) -> None:
    raw = RawInteractions(
        name="toy",
        item_kind="item",
        item_texts=tuple(f"item {i}" for i in range(N_ITEMS)),
        pairs=interactions,
        user_ids=tuple(range(N_USERS)),
        item_ids=tuple(range(N_ITEMS)),
    )
    assert raw.n_users == N_USERS
    assert raw.split(5).fingerprint == split(interactions, 5).fingerprint


def test_ml1m_sized_input_splits_in_under_two_seconds() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, n = 6040, 3706, 1_000_209
    pairs = np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], axis=1)
    texts = [""] * n_items
    start = time.perf_counter()
    dataset = split_cold_start("big", "movie", n_users, texts, pairs, 0)
    elapsed = time.perf_counter() - start
    assert dataset.n_interactions == len(np.unique(pairs[:, 0] * n_items + pairs[:, 1]))
    assert elapsed < 2.0, f"split took {elapsed:.2f} s"


def test_a_refit_split_holds_a_share_of_the_items_out_whole() -> None:
    pairs = np.unique(make_interactions(), axis=0)
    held = hold_out_items(pairs, 0.1, 5, seed=3)
    every = np.unique(pairs[:, 1])
    assert np.all(np.diff(held) > 0) and np.isin(held, every).all()
    assert 0.05 * len(every) < len(held) < 0.15 * len(every)
    np.testing.assert_array_equal(held, hold_out_items(pairs, 0.1, 5, seed=3))
    assert len(hold_out_items(pairs, 0.1, len(every), seed=3)) == 0  # too few: none

    data = refit_split(pairs, held, N_USERS, N_ITEMS)
    np.testing.assert_array_equal(data.cold_val_items, held)
    assert not np.isin(data.warm_items, held).any()
    assert len(data.splits["warm_train"]) + len(data.splits["cold_val"]) == len(pairs)
    assert all(len(data.splits[part]) == 0 for part in ("warm_val", "warm_test", "cold_test"))
