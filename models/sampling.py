"""Negative sampling for pairwise (BPR-style) losses, vectorised over a whole epoch."""

from __future__ import annotations

import numpy as np


class NegativeSampler:
    """Draws, for each (user, positive) pair, an item the user has not interacted with.

    Negatives come from ``item_pool`` (by default every item that has a training
    interaction). Rejection sampling with a sorted key array keeps it exact and fast
    even for a million pairs.
    """

    def __init__(self, pairs: np.ndarray, n_items: int, item_pool: np.ndarray | None = None):
        self.n_items = n_items
        self.keys = np.unique(pairs[:, 0] * n_items + pairs[:, 1])
        self.item_pool = np.unique(pairs[:, 1]) if item_pool is None else np.asarray(item_pool)
        if len(self.item_pool) < 2:
            raise ValueError("negative sampling needs at least two items in the pool")

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        at = np.searchsorted(self.keys, keys)
        at = np.minimum(at, len(self.keys) - 1)
        return self.keys[at] == keys

    def sample(
        self, users: np.ndarray, rng: np.random.Generator, max_rounds: int = 50
    ) -> np.ndarray:
        """One negative item per entry of ``users``."""
        negatives = self.item_pool[rng.integers(len(self.item_pool), size=len(users))]
        todo = np.flatnonzero(self.is_positive(users, negatives))
        for _ in range(max_rounds):
            if len(todo) == 0:
                break
            negatives[todo] = self.item_pool[rng.integers(len(self.item_pool), size=len(todo))]
            todo = todo[self.is_positive(users[todo], negatives[todo])]
        return negatives
