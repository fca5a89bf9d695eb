"""The one in-memory form every data set takes once loaded and split.

Loaders (CiteULike, MovieLens, generic CSV, synthetic) all return a
:class:`ColdStartDataset`, so evaluation, backbones, baselines and the
benchmark never care where the data came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: The five parts of the cold-start protocol (METHOD.md, "Evaluation tasks").
SPLIT_NAMES: tuple[str, ...] = ("warm_train", "warm_val", "warm_test", "cold_val", "cold_test")


def as_pairs(array: np.ndarray | list) -> np.ndarray:
    """Return ``array`` as a C-contiguous ``(n, 2)`` int64 array of (user, item) pairs."""
    pairs = np.ascontiguousarray(np.asarray(array, dtype=np.int64).reshape(-1, 2))
    return pairs


@dataclass(frozen=True, eq=False)
class ColdStartDataset:
    """Users, items with their text, and the warm/cold split of their interactions.

    Ids are dense: users ``0..n_users-1``, items ``0..n_items-1``; for CiteULike
    they are the data set's own 0-based ids, so exported arrays line up with
    the published split files.

    Attributes:
        name: short data set name (``citeulike``, ``ml-1m``...), used in reports.
        item_kind: the noun prompts use for an item ("paper", "movie").
        n_users: number of users.
        item_texts: content of every item (title, optionally more); index = item id.
        splits: ``(n, 2)`` int64 arrays of (user, item) pairs for each name in
            :data:`SPLIT_NAMES`. Warm items appear only in the ``warm_*`` parts,
            cold items only in one of ``cold_val``/``cold_test``.
    """

    name: str
    item_kind: str
    n_users: int
    item_texts: tuple[str, ...]
    splits: dict[str, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        missing = set(SPLIT_NAMES) - set(self.splits)
        if missing:
            raise ValueError(f"{self.name}: split parts missing: {sorted(missing)}")
        for part in SPLIT_NAMES:
            pairs = self.splits[part]
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise ValueError(f"{self.name}: {part} must have shape (n, 2), got {pairs.shape}")
            if len(pairs) and (pairs.min(axis=0) < 0).any():
                raise ValueError(f"{self.name}: {part} holds a negative id")
            if len(pairs) and pairs[:, 0].max() >= self.n_users:
                raise ValueError(f"{self.name}: {part} names a user id >= n_users={self.n_users}")
            if len(pairs) and pairs[:, 1].max() >= self.n_items:
                raise ValueError(f"{self.name}: {part} names an item id >= n_items={self.n_items}")
        warm = set(np.unique(np.concatenate([self.splits[p][:, 1] for p in SPLIT_NAMES[:3]])))
        for part in ("cold_val", "cold_test"):
            overlap = warm & set(np.unique(self.splits[part][:, 1]))
            if overlap:
                raise ValueError(
                    f"{self.name}: {len(overlap)} items of {part} also have warm interactions"
                    f" (e.g. item {min(overlap)}); cold items must have none"
                )
        overlap = set(self.cold_val_items) & set(self.cold_test_items)
        if overlap:
            raise ValueError(
                f"{self.name}: {len(overlap)} items are in both cold_val and cold_test"
            )

    @property
    def n_items(self) -> int:
        return len(self.item_texts)

    @property
    def n_interactions(self) -> int:
        return sum(len(self.splits[p]) for p in SPLIT_NAMES)

    @cached_property
    def warm_items(self) -> np.ndarray:
        """Sorted ids of items with training interactions (the backbone can embed them)."""
        return np.unique(self.splits["warm_train"][:, 1])

    @cached_property
    def cold_val_items(self) -> np.ndarray:
        return np.unique(self.splits["cold_val"][:, 1])

    @cached_property
    def cold_test_items(self) -> np.ndarray:
        return np.unique(self.splits["cold_test"][:, 1])

    def cold_items(self, stage: str) -> np.ndarray:
        """Cold items evaluated at ``stage`` (``"val"`` or ``"test"``)."""
        return {"val": self.cold_val_items, "test": self.cold_test_items}[stage]

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of texts and every split: names the exact data a result came from."""
        digest = hashlib.sha256()
        digest.update(f"{self.name}|{self.n_users}|{self.n_items}".encode())
        for text in self.item_texts:
            digest.update(text.encode())
            digest.update(b"\0")
        for part in SPLIT_NAMES:
            digest.update(part.encode())
            digest.update(self.splits[part].tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict[str, int | str]:
        """Counts for logs and reports."""
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "warm_items": len(self.warm_items),
            "cold_val_items": len(self.cold_val_items),
            "cold_test_items": len(self.cold_test_items),
            **{part: len(self.splits[part]) for part in SPLIT_NAMES},
        }
