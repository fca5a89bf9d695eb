"""Refining: rank each item's candidate users and keep the ones to simulate.

A candidate is described by features: the standardised filter signals, the user's history
length, the merged filter score and, when the simulator is used, the LM's logit of P(Yes),
each centred within its item's list. A logistic regression
learned on validation lists (labels: the real validation interactions of those cold items)
turns them into one score; its weights are reported, so the share the LM gets is what
validation gave it. Each item then keeps its best ``keep`` candidates, or those whose
probability reaches ``threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Refiner:
    """Logistic regression over named candidate features (standardised with train stats)."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(n_items, K, n_features)`` -> ``(n_items, K)`` logits of "a real interaction"."""
        return ((within_list(features) - self.mean) / self.std) @ self.weights + self.bias

    def describe(self) -> dict[str, float]:
        """Weight per feature on standardised inputs: comparable sizes, readable in reports."""
        return {name: float(w) for name, w in zip(self.names, self.weights, strict=True)}


def candidate_features(
    signals: Mapping[str, np.ndarray],
    names: Sequence[str],
    merged: np.ndarray,
    candidates: np.ndarray,
    log_history_length: np.ndarray,
) -> np.ndarray:
    """``(n_items, K, len(names) + 2)`` refiner inputs of each item's candidate users.

    Per candidate: every standardised signal in ``names`` order, log(1 + history length)
    and the merged filter score (the feature names :func:`feature_names` gives).
    """
    rows = np.arange(len(candidates))[:, None]
    return np.stack(
        [signals[name][rows, candidates] for name in names]
        + [log_history_length[candidates], merged[rows, candidates]],
        axis=-1,
    )


def feature_names(signals: Sequence[str]) -> list[str]:
    """Names of :func:`candidate_features`' columns, for the refiner's readable weights."""
    return [*signals, "history length", "merged"]


def within_list(features: np.ndarray) -> np.ndarray:
    """Features centred and scaled within each item's list (axis 1).

    The refiner only has to order the users of one item; a pooled fit would also learn which
    items have many real users, which no ranking within a list can use.
    """
    mean = features.mean(axis=1, keepdims=True)
    std = features.std(axis=1, keepdims=True)
    return (features - mean) / np.maximum(std, 1e-6)


def fit_refiner(
    features: np.ndarray, labels: np.ndarray, names: Sequence[str], l2: float = 1e-3
) -> Refiner:
    """Fit on ``(n_items, K, n_features)`` lists and their 0/1 labels (L-BFGS, log loss)."""
    if features.shape[-1] != len(names):
        raise ValueError(f"{features.shape[-1]} feature columns but {len(names)} names")
    flat = within_list(features.astype(np.float64)).reshape(-1, len(names))
    target = torch.from_numpy(labels.reshape(-1).astype(np.float64))
    if target.min() == target.max():
        raise ValueError("refiner training lists need both real and non-interactions")
    mean, std = flat.mean(0), flat.std(0) + 1e-9
    inputs = torch.from_numpy((flat - mean) / std)
    weights = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(inputs @ weights + bias, target)
        loss = loss + l2 * weights.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return Refiner(
        names=tuple(names),
        mean=mean,
        std=std,
        weights=weights.detach().numpy(),
        bias=float(bias.detach()),
    )


def probability(logits: np.ndarray) -> np.ndarray:
    """The sigmoid: a refiner's (or the LM's) logit as the probability it stands for."""
    return 1.0 / (1.0 + np.exp(-logits))


def select(
    scores: np.ndarray, keep: int | None = None, threshold: float | None = None
) -> np.ndarray:
    """Boolean ``(n_items, K)`` mask of the candidates kept.

    ``keep``: the best ``keep`` per item; ``threshold``: those with probability (sigmoid of
    the score) at least ``threshold``; both: the best ``keep`` among those above it.
    """
    if keep is None and threshold is None:
        raise ValueError("give keep, threshold or both")
    mask = np.ones(scores.shape, dtype=bool)
    if threshold is not None:
        mask &= probability(scores) >= threshold
    if keep is not None and keep < scores.shape[1]:
        ranked = np.where(mask, scores, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")[:, :keep]
        top = np.zeros_like(mask)
        np.put_along_axis(top, order, True, axis=1)
        mask &= top
    return mask


def per_item_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per item (row), the AUC of ``scores`` separating label 1 from 0 among its candidates.

    NaN for an item whose candidates are all one class. Ties count one half.
    """
    out = np.full(len(scores), np.nan)
    for row in range(len(scores)):
        positive, negative = scores[row][labels[row] == 1], scores[row][labels[row] == 0]
        if len(positive) and len(negative):
            difference = positive[:, None] - negative[None, :]
            out[row] = (difference > 0).mean() + 0.5 * (difference == 0).mean()
    return out


def per_item_precision(scores: np.ndarray, labels: np.ndarray, keep: int) -> np.ndarray:
    """Per item (row), the share of label 1 among its ``keep`` best-scored candidates."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(labels, order, axis=1).mean(1).astype(np.float64)


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` over items where both are defined, with its standard error."""
    keep = ~(np.isnan(a) | np.isnan(b))
    difference = a[keep] - b[keep]
    if len(difference) < 2:
        return {"mean": float("nan"), "se": float("nan"), "items": int(len(difference))}
    return {
        "mean": float(difference.mean()),
        "se": float(difference.std(ddof=1) / np.sqrt(len(difference))),
        "items": int(len(difference)),
    }
