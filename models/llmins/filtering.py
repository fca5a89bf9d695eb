"""Filtering: merge the subtowers' user scores for a cold item and keep the top K users.

Three signals score every (cold item, user) pair:

* ``collaborative``: generated behavioural item vector . backbone user vector (E_Ci . E_Cu);
* ``language``: item tower . user tower of the language subtower (E_Li . E_Lu);
* ``history``: late-interaction similarity of the item's content to the user's history;
* ``text2users``: the LM fine-tuned to map an item's text into the backbone's user space
  (:mod:`models.llmins.text_to_users`), scored against the backbone's user vectors.

The paper merges by concatenation, i.e. it adds raw inner products whose scales are
unrelated. Here each signal is first standardised over the users of the item (z-score), then
a weighted sum is taken, the weights chosen on cold *validation* items. A weight of zero
removes a signal (the ``no-cs`` / ``no-ls`` ablations).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from models.llmins.history import HistorySimilarity

SIGNALS: tuple[str, ...] = ("collaborative", "language", "history", "text2users")
#: Signals scored as inner products of an (item table, user table) pair.
TABLE_SIGNALS: tuple[str, ...] = ("collaborative", "language", "text2users")

#: Weights tried per signal when choosing the merge on validation.
WEIGHT_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)


def signal_scores(
    name: str,
    items: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray] | None = None,
    history: HistorySimilarity | None = None,
    exclude_self: bool = False,
) -> np.ndarray:
    """``(len(items), n_users)`` scores of one signal, standardised over users per item.

    The :data:`TABLE_SIGNALS` need their (user, item) ``tables``, scored by inner product;
    ``history`` needs the late-interaction scorer.
    """
    if name == "history" and history is not None:
        raw = history.scores(items, exclude_self=exclude_self)
    elif name in TABLE_SIGNALS and tables is not None:
        users, table = tables
        raw = table[items] @ users.T
    else:
        raise ValueError(f"signal {name!r} needs its source; signals: {', '.join(SIGNALS)}")
    return standardize_rows(raw)


def standardize_rows(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation: one scale for every signal."""
    scores = scores.astype(np.float32, copy=False)
    mean = scores.mean(1, keepdims=True)
    std = scores.std(1, keepdims=True)
    return (scores - mean) / np.maximum(std, 1e-6)


def merge(signals: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum of standardised signals (signals with weight 0 may be absent)."""
    merged = None
    for name, weight in weights.items():
        if weight == 0:
            continue
        term = weight * signals[name]
        merged = term if merged is None else merged + term
    if merged is None:
        raise ValueError("at least one signal needs a non-zero weight")
    return merged


def top_users(scores: np.ndarray, k: int, excluded: np.ndarray | None = None) -> np.ndarray:
    """``(n_items, k)`` user ids of the k highest scores per row, best first.

    ``excluded`` is a boolean ``(n_items, n_users)`` mask of users that may not be chosen.
    """
    tensor = torch.from_numpy(scores)
    if excluded is not None:
        tensor = tensor.masked_fill(torch.from_numpy(excluded), float("-inf"))
    return tensor.topk(min(k, scores.shape[1]), dim=1).indices.numpy()


def precision_at(candidates: np.ndarray, truth: Sequence[set[int]]) -> np.ndarray:
    """Per item, the share of its candidate users that are in its ground-truth set."""
    return np.array(
        [
            np.mean([user in truth[row] for user in candidates[row]])
            if len(candidates[row])
            else 0.0
            for row in range(len(candidates))
        ]
    )


def choose_weights(
    signals: Mapping[str, np.ndarray],
    truth: Sequence[set[int]],
    k: int,
    allowed: Sequence[str] = SIGNALS,
) -> tuple[dict[str, float], dict[str, float]]:
    """The weights whose top-``k`` users have the best mean precision on validation items.

    Returns the chosen weights and the precision of every combination tried (keyed by a
    readable ``name=weight`` string) so the choice is visible in the report.
    """
    tried: dict[str, float] = {}
    best: dict[str, float] = {}
    best_precision = -1.0
    for combination in itertools.product(WEIGHT_GRID, repeat=len(allowed)):
        if not any(combination) or max(combination) != 1.0:
            continue  # all-zero, or a rescaled duplicate of another combination
        weights = dict(zip(allowed, combination, strict=True))
        precision = float(precision_at(top_users(merge(signals, weights), k), truth).mean())
        tried[",".join(f"{n}={w}" for n, w in weights.items())] = precision
        if precision > best_precision:
            best, best_precision = weights, precision
    return best, tried
