"""Where a new item's candidate users come from: every user, or a vector index's shortlist.

The filter scores users with four signals and merges them after standardising each over
all users of the item (:mod:`models.llmins.filtering`). Scoring every user needs every
user's tables in memory, which bounds a worker by the number of users. So the warm-up asks
a :class:`CandidateSource` for a *pool* per item: some users with each signal's raw score,
their backbone vectors (the update's input) and history lengths (a refiner feature), and
each signal's mean and spread over all users (the standardisation's constants).

* :class:`ExactScan` pools every user and measures the spread exactly: what the offline
  pipeline computes, so the service and the benchmark agree item for item.
* The service's source (``services.candidates``) pools the union of each signal's best
  users from Qdrant and takes the spread from :class:`SignalMoments`, which a model version
  carries: exact for the inner-product signals (a mean vector and a covariance), estimated
  on a fixed sample of users for the history similarity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from models.llmins.filtering import TABLE_SIGNALS
from models.llmins.history import HistorySimilarity, UserHistories

#: Users whose histories estimate the history similarity's spread per item.
REFERENCE_USERS = 1024


@dataclass
class CandidatePool:
    """The users one item's filter ranks, with what ranking and fitting them needs.

    Attributes:
        users: ``(m,)`` user rows.
        raw: per signal, ``(m,)`` raw scores of those users.
        mean, std: per signal, the raw scores' mean and standard deviation over all users.
        backbone: ``(m, d)`` the users' backbone vectors.
        history_lengths: ``(m,)`` how many items each user interacted with.
    """

    users: np.ndarray
    raw: dict[str, np.ndarray]
    mean: dict[str, float]
    std: dict[str, float]
    backbone: np.ndarray
    history_lengths: np.ndarray

    def standardized(self, name: str) -> np.ndarray:
        """Signal ``name`` on the one scale every signal shares (as ``standardize_rows``)."""
        return (self.raw[name] - self.mean[name]) / max(self.std[name], 1e-6)


class CandidateSource(Protocol):
    """Pools of candidate users for items, from each signal's item-side query."""

    def pools(
        self, queries: Mapping[str, np.ndarray], content: np.ndarray, limit: int
    ) -> list[CandidatePool]:
        """One pool per item. ``queries`` holds each inner-product signal's ``(n, d_s)``
        item vectors, ``content`` the items' content vectors (the history signal's query);
        ``limit`` is how many users each signal contributes at least (where it shortlists).
        """
        ...


@dataclass
class ExactScan:
    """Every user in every pool, scored from the tables in memory (offline, and the check)."""

    signal_users: Mapping[str, np.ndarray]
    history: HistorySimilarity
    users: np.ndarray

    def pools(
        self, queries: Mapping[str, np.ndarray], content: np.ndarray, limit: int
    ) -> list[CandidatePool]:
        raw = {name: query @ self.signal_users[name].T for name, query in queries.items()}
        raw["history"] = self.history.scores_of_vectors(content)
        every = np.arange(len(self.users))
        lengths = self.history.histories.lengths()
        pools = []
        for row in range(len(content)):
            scores = {name: np.asarray(table[row], np.float32) for name, table in raw.items()}
            pools.append(
                CandidatePool(
                    users=every,
                    raw=scores,
                    mean={name: s.mean() for name, s in scores.items()},
                    std={name: s.std() for name, s in scores.items()},
                    backbone=self.users,
                    history_lengths=lengths,
                )
            )
        return pools


@dataclass
class SignalMoments:
    """Each signal's mean and spread over all users, for an item, without the users.

    For an inner-product signal with user table U, an item query q scores q.u: its mean is
    q.mean(U) and its variance q^T cov(U) q, exact from a d-vector and a d x d matrix. The
    history similarity is not linear in the user; its moments are those of a fixed random
    sample of users (all of them where there are fewer than :data:`REFERENCE_USERS`).
    """

    means: dict[str, np.ndarray]
    covariances: dict[str, np.ndarray]
    reference: HistorySimilarity

    @classmethod
    def of(
        cls,
        signal_users: Mapping[str, np.ndarray],
        history: HistorySimilarity,
        sample: int = REFERENCE_USERS,
        seed: int = 0,
    ) -> SignalMoments:
        means, covariances = {}, {}
        for name, table in signal_users.items():
            table = table.astype(np.float64)
            means[name] = table.mean(0)
            covariances[name] = np.cov(table, rowvar=False, bias=True).reshape(
                table.shape[1], table.shape[1]
            )
        histories = history.histories
        users = np.arange(histories.n_users)
        if len(users) > sample:
            users = np.sort(np.random.default_rng(seed).choice(users, sample, replace=False))
        lengths = histories.lengths()[users]
        items = np.concatenate([histories.of(user) for user in users]) if len(users) else []
        kept, local = np.unique(np.asarray(items, dtype=np.int64), return_inverse=True)
        reference = HistorySimilarity(
            UserHistories(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), local),
            history.content[kept],
            history.top,
        )
        return cls(means, covariances, reference)

    def of_items(
        self, queries: Mapping[str, np.ndarray], content: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per signal, ``(n,)`` means and standard deviations over users for each item."""
        mean, std = {}, {}
        for name, query in queries.items():
            query = np.asarray(query, dtype=np.float64)
            mean[name] = query @ self.means[name]
            variance = np.einsum("nd,de,ne->n", query, self.covariances[name], query)
            std[name] = np.sqrt(np.maximum(variance, 0.0))
        sample = self.reference.scores_of_vectors(content)
        mean["history"], std["history"] = sample.mean(1), sample.std(1)
        return mean, std

    def state(self) -> dict:
        """Plain arrays (what ``torch.load(weights_only=True)`` reads back)."""
        histories = self.reference.histories
        return {
            "means": self.means,
            "covariances": self.covariances,
            "reference_indptr": histories.indptr,
            "reference_items": histories.items,
            "reference_content": np.ascontiguousarray(self.reference.content),
            "top": self.reference.top,
        }

    @classmethod
    def from_state(cls, state: dict) -> SignalMoments:
        histories = UserHistories(state["reference_indptr"], state["reference_items"])
        reference = HistorySimilarity(histories, state["reference_content"], int(state["top"]))
        return cls(dict(state["means"]), dict(state["covariances"]), reference)


def table_signals(signals: tuple[str, ...]) -> tuple[str, ...]:
    """The inner-product signals among ``signals`` (the history similarity is not one)."""
    return tuple(name for name in signals if name in TABLE_SIGNALS)
