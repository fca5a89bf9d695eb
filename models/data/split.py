"""The paper's cold-start splitter, for data sets that come without a published split.

LLM-InS (METHOD.md, "Evaluation tasks") makes 20% of the items cold, halves them into
validation and test, and splits the remaining (warm) items' interactions 8:1:1 into
train/validation/test. CiteULike ships that split; MovieLens and user CSV files get it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.data.dataset import SPLIT_NAMES, ColdStartDataset, as_pairs


def split_cold_start(
    name: str,
    item_kind: str,
    n_users: int,
    item_texts: Sequence[str],
    interactions: np.ndarray,
    seed: int,
    cold_fraction: float = 0.2,
    warm_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> ColdStartDataset:
    """Split ``interactions`` into the five cold-start parts, reproducibly for ``seed``.

    * Duplicate (user, item) pairs are collapsed first: the protocol is implicit feedback,
      and a pair in two parts would leak test answers into training.
    * Among the items with at least one interaction, ``round(cold_fraction * n)`` drawn at
      random are cold; the first half (rounded down) goes to ``cold_val``, the rest to
      ``cold_test``, each with all its interactions.
    * The warm items' interactions are shuffled together and cut by ``warm_ratios``
      (normalised by their sum). A warm item whose interactions all landed in validation or
      test gets one of them (drawn at random) moved to ``warm_train``: warm items are defined
      by ``warm_train``, and an item the backbone never trained on is neither warm nor cold.
      That move makes ``warm_train`` slightly larger than its ratio on sparse data.
    * Items without any interaction keep their text (ids stay those of ``item_texts``) but
      belong to no part: they are neither warm nor cold, so no metric counts them.

    Every part is sorted by (user, item). Randomness comes only from
    ``np.random.default_rng(seed)``, so the split depends on the seed and the data alone.

    Raises:
        ValueError: on out-of-range ids or invalid fractions.
    """
    if not 0 <= cold_fraction < 1:
        raise ValueError(f"cold_fraction must be in [0, 1), got {cold_fraction}")
    ratios = np.asarray(warm_ratios, dtype=np.float64)
    if ratios.shape != (3,) or (ratios < 0).any() or ratios.sum() <= 0:
        raise ValueError(f"warm_ratios must be 3 non-negative numbers, got {warm_ratios}")
    n_items = len(item_texts)
    pairs = as_pairs(interactions)
    if len(pairs) and (pairs.min(axis=0) < 0).any():
        raise ValueError(f"{name}: negative id in interactions")
    if len(pairs) and (pairs[:, 0].max() >= n_users or pairs[:, 1].max() >= n_items):
        raise ValueError(f"{name}: interaction ids exceed n_users={n_users}/n_items={n_items}")

    # One int64 key per pair: sorting the keys orders pairs by (user, item) and puts duplicates
    # side by side. (NumPy 2 np.unique hashes: ~50x slower than this sort on 1M pairs.)
    keys = np.sort(pairs[:, 0] * n_items + pairs[:, 1])
    keys = keys[np.diff(keys, prepend=-1) != 0]
    pairs = np.stack([keys // n_items, keys % n_items], axis=1)

    rng = np.random.default_rng(seed)
    items = np.flatnonzero(np.bincount(pairs[:, 1], minlength=n_items))
    cold = rng.permutation(items)[: round(cold_fraction * len(items))]
    n_cold_val = len(cold) // 2
    # part[i] indexes SPLIT_NAMES: 0..2 warm parts, 3 cold_val, 4 cold_test.
    item_part = np.zeros(n_items, dtype=np.int8)
    item_part[cold[:n_cold_val]] = 3
    item_part[cold[n_cold_val:]] = 4
    part = item_part[pairs[:, 1]]

    warm_rows = np.flatnonzero(part == 0)
    shuffled = warm_rows[rng.permutation(len(warm_rows))]
    bounds = np.round(np.cumsum(ratios / ratios.sum())[:2] * len(warm_rows)).astype(np.int64)
    part[shuffled[bounds[0] : bounds[1]]] = 1
    part[shuffled[bounds[1] :]] = 2

    in_train = np.zeros(n_items, dtype=bool)
    in_train[pairs[part == 0, 1]] = True
    orphans = shuffled[~in_train[pairs[shuffled, 1]]]
    # ``orphans`` is in shuffled order, so each item's first row is a random one of its rows.
    _, first = np.unique(pairs[orphans, 1], return_index=True)
    part[orphans[first]] = 0

    return ColdStartDataset(
        name=name,
        item_kind=item_kind,
        n_users=n_users,
        item_texts=tuple(item_texts),
        splits={split: pairs[part == index] for index, split in enumerate(SPLIT_NAMES)},
    )


def hold_out_items(pairs: np.ndarray, share: float, minimum: int, seed: int) -> np.ndarray:
    """A random ``share`` of the items of ``pairs`` (sorted), or none when fewer than
    ``minimum`` are drawn: the items a refit leaves out to judge itself on, as a first fit
    is judged on cold validation items it never trained on."""
    every = np.unique(pairs[:, 1])
    held = np.sort(every[np.random.default_rng(seed).random(len(every)) < share])
    return held if len(held) >= minimum else held[:0]


def refit_split(
    pairs: np.ndarray, held_items: np.ndarray, n_users: int, n_items: int
) -> ColdStartDataset:
    """``pairs`` as a data set for a refit: the interactions of ``held_items`` are its cold
    validation part, all the others its warm training part (no other part: a refit has
    no test of its own, and its early stopping reads the cold validation items)."""
    held = np.isin(pairs[:, 1], held_items)
    empty = np.zeros((0, 2), dtype=np.int64)
    splits = dict.fromkeys(SPLIT_NAMES, empty)
    splits.update(warm_train=pairs[~held].astype(np.int64), cold_val=pairs[held].astype(np.int64))
    return ColdStartDataset("refit", "item", n_users, ("",) * n_items, splits)


@dataclass(frozen=True, eq=False)
class RawInteractions:
    """A data set as read from its files, before the split, with its original ids.

    Loaders map the source's ids to dense 0-based ids; ``user_ids[u]`` and ``item_ids[i]``
    give back the source id of dense user ``u`` and item ``i``, so results can be reported
    (or recommendations served) in the source's own ids.

    Attributes:
        name: data set name, as in :class:`ColdStartDataset`.
        item_kind: the noun prompts use for an item.
        item_texts: content of every item; index = dense item id.
        pairs: ``(n, 2)`` int64 (user, item) dense pairs, duplicates allowed.
        user_ids: source id of each dense user.
        item_ids: source id of each dense item.
    """

    name: str
    item_kind: str
    item_texts: tuple[str, ...]
    pairs: np.ndarray
    user_ids: tuple[int | str, ...]
    item_ids: tuple[int | str, ...]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def split(self, seed: int) -> ColdStartDataset:
        """The paper's cold-start split of these interactions (see :func:`split_cold_start`)."""
        return split_cold_start(
            self.name, self.item_kind, self.n_users, self.item_texts, self.pairs, seed
        )
