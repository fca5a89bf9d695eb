"""Users described by the items they interacted with, and the late-interaction similarity.

A user's text, for the language model, is the set of items they interacted with. Two uses:

* :func:`history_similarity` scores a target item against every user as the mean of the
  ``top`` highest cosine similarities between the target's content vector and the vectors of
  the items in the user's history (late interaction over the history). One mean vector per
  user blurs a user with several interests; the best few matches keep them apart. It is the
  strongest zero-shot signal measured on CiteULike (issue 3) and a feature of the filter and
  the refiner.
* :meth:`UserHistories.most_similar` picks the history items a prompt lists for a target:
  the user's most similar items first, not a random sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class UserHistories:
    """Each user's items in CSR form: ``items[indptr[u]:indptr[u + 1]]`` are user u's."""

    indptr: np.ndarray
    items: np.ndarray

    @classmethod
    def from_pairs(cls, pairs: np.ndarray, n_users: int) -> UserHistories:
        """Histories from ``(n, 2)`` (user, item) pairs; duplicates are kept once."""
        pairs = np.unique(np.asarray(pairs, dtype=np.int64).reshape(-1, 2), axis=0)
        counts = np.bincount(pairs[:, 0], minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr=indptr, items=pairs[:, 1].copy())

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def most_similar(
        self,
        user: int,
        target: np.ndarray,
        unit_content: np.ndarray,
        count: int,
        exclude: int | None = None,
    ) -> np.ndarray:
        """Up to ``count`` of the user's items, most similar to the ``target`` vector first.

        ``unit_content`` holds L2-normalised item vectors; ``exclude`` (the target itself,
        when a warm item plays a cold one) is never listed.
        """
        history = self.of(user)
        if exclude is not None:
            history = history[history != exclude]
        similarity = unit_content[history] @ target
        return history[np.argsort(-similarity, kind="stable")[:count]]

    def mean_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """``(n_users, d)``: each user's mean item vector (zeros for an empty history)."""
        sums = np.zeros((self.n_users, vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, np.repeat(np.arange(self.n_users), self.lengths()), vectors[self.items])
        return (sums / np.maximum(self.lengths(), 1)[:, None]).astype(np.float32)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class HistorySimilarity:
    """Late-interaction similarity of target items to every user's history.

    Users are grouped by history length (powers of two) so each group is one padded gather
    with little padding, whatever the spread of history lengths.

    Args:
        histories: whose histories are compared (the warm training interactions).
        content: ``(n_items, d)`` content vectors of all items.
        top: how many best-matching history items are averaged.
    """

    def __init__(self, histories: UserHistories, content: np.ndarray, top: int = 3) -> None:
        self.histories = histories
        self.top = top
        self.content = content  # kept as given: a saved copy rebuilds exactly this scorer
        self.unit = torch.from_numpy(unit_rows(content))
        lengths = histories.lengths()
        self.groups: list[tuple[torch.Tensor, torch.Tensor]] = []
        width_of = np.where(lengths > 0, 2 ** np.ceil(np.log2(np.maximum(lengths, 1))), 0)
        for width in np.unique(width_of):
            if width == 0:
                continue
            users = np.flatnonzero(width_of == width)
            padded = np.full((len(users), int(width)), -1, dtype=np.int64)
            for row, user in enumerate(users):
                history = histories.of(user)
                padded[row, : len(history)] = history
            self.groups.append((torch.from_numpy(users), torch.from_numpy(padded)))

    @torch.inference_mode()
    def scores(
        self, targets: np.ndarray, exclude_self: bool = False, chunk: int = 32
    ) -> np.ndarray:
        """``(len(targets), n_users)`` float32 similarities; -1 for users with no history.

        ``exclude_self`` drops each target from the histories it is compared with: a warm
        item playing a cold one must not find itself in its own users' histories.
        """
        targets = np.asarray(targets, dtype=np.int64)
        out = np.full((len(targets), self.histories.n_users), -1.0, dtype=np.float32)
        for start in range(0, len(targets), chunk):
            batch = torch.from_numpy(targets[start : start + chunk])
            similarity = self.unit[batch] @ self.unit.T
            if exclude_self:
                similarity[torch.arange(len(batch)), batch] = float("-inf")
            out[start : start + len(batch)] = self._late_interaction(similarity)
        return out

    @torch.inference_mode()
    def scores_of_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """The same similarities for content vectors of items unknown at construction.

        What the online service calls for a new item: its vector is compared with the
        histories exactly as a known item's row would be.
        """
        unit = torch.from_numpy(unit_rows(np.atleast_2d(vectors)))
        return self._late_interaction(unit @ self.unit.T)

    def _late_interaction(self, similarity: torch.Tensor) -> np.ndarray:
        """Per user, the mean of the ``top`` best entries of ``similarity`` over the history."""
        out = np.full((len(similarity), self.histories.n_users), -1.0, dtype=np.float32)
        # One extra column at -inf stands for the padding index -1.
        similarity = F.pad(similarity, (0, 1), value=float("-inf"))
        for users, padded in self.groups:
            gathered = similarity[:, padded]  # (batch, users, width)
            k = min(self.top, padded.shape[1])
            best = gathered.topk(k, dim=2).values
            valid = torch.isfinite(best)
            mean = torch.where(valid, best, 0.0).sum(2) / valid.sum(2).clamp(min=1)
            out[:, users.numpy()] = torch.where(valid.any(2), mean, -1.0).numpy()
        return out


def late_interaction(target: np.ndarray, histories: list[np.ndarray], top: int) -> np.ndarray:
    """:class:`HistorySimilarity`'s score of one content vector against given histories.

    ``histories`` holds, per user, the unit content vectors of their items (a vector
    index returns them as a multivector); an empty one scores -1, as in the scorer.
    """
    unit = unit_rows(np.atleast_2d(target))[0]
    scores = np.full(len(histories), -1.0, dtype=np.float32)
    for row, vectors in enumerate(histories):
        if len(vectors):
            similarity = np.asarray(vectors, dtype=np.float32) @ unit
            best = -np.sort(-similarity)[:top]
            scores[row] = best.mean()
    return scores
