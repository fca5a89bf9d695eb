"""Full-ranking Recall@K and NDCG@K for the overall, cold and warm tasks.

The protocol of METHOD.md / DESIGN.md (the one ColdRec and ALDI use):

* warm task: rank all warm items; ground truth = the stage's warm interactions;
* cold task: rank the stage's cold items; ground truth = their interactions;
* overall task: rank warm items and the stage's cold items together; ground truth = both.

Items the user interacted with in training (and, at test time, validation) are removed from
the ranking. Users without ground truth in a task are skipped. ``recall`` divides hits by the
number of ground-truth items (the ColdRec/LightGCN convention); ``recall_min`` divides by
``min(K, |gt|)``, the other convention in the literature, reported beside it.

Scores are inner products of exported user and item embeddings, computed in torch and chunked
over users so CiteULike (5,551 x 16,980) evaluates in about a second on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.data.dataset import ColdStartDataset

TASKS: tuple[str, ...] = ("overall", "cold", "warm")
STAGES: tuple[str, ...] = ("val", "test")


def _user_item_csr(pairs: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, items) of the pairs grouped by user, items sorted within each user."""
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    users, items = pairs[order, 0], pairs[order, 1]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.add.at(indptr, users + 1, 1)
    return np.cumsum(indptr), items


def task_protocol(
    dataset: ColdStartDataset, task: str, stage: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three inputs of one task at one stage.

    Returns:
        candidates: sorted item ids that are ranked;
        ground_truth: (user, item) pairs to retrieve;
        excluded: (user, item) pairs removed from the ranking (known interactions).
    """
    if task not in TASKS or stage not in STAGES:
        raise ValueError(f"task must be one of {TASKS} and stage one of {STAGES}")
    splits = dataset.splits
    warm_gt = splits[f"warm_{stage}"]
    cold_gt = splits[f"cold_{stage}"]
    cold_items = dataset.cold_items(stage)
    excluded = splits["warm_train"]
    if stage == "test":
        excluded = np.concatenate([excluded, splits["warm_val"]])
    if task == "warm":
        return dataset.warm_items, warm_gt, excluded
    if task == "cold":
        return cold_items, cold_gt, excluded
    candidates = np.union1d(dataset.warm_items, cold_items)
    return candidates, np.concatenate([warm_gt, cold_gt]), excluded


def rank_metrics(
    user_embeddings: torch.Tensor | np.ndarray,
    item_embeddings: torch.Tensor | np.ndarray,
    candidates: np.ndarray,
    ground_truth: np.ndarray,
    excluded: np.ndarray,
    k: int = 20,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@k, NDCG@k and hit-normalised recall for one ranking task (means over users).

    The arguments are those of :func:`per_user_metrics`. Returns ``{"recall@k", "ndcg@k",
    "recall_min@k", "users"}``; metrics are means over users with at least one
    ground-truth candidate.
    """
    return summarize(
        *per_user_metrics(
            user_embeddings, item_embeddings, candidates, ground_truth, excluded, k, chunk_size
        )
    )


def summarize(users: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-user metrics (:func:`per_user_metrics`) as means, with the count of users."""
    if len(users) == 0:
        return {**dict.fromkeys(values, float("nan")), "users": 0}
    return {**{name: float(v.mean()) for name, v in values.items()}, "users": int(len(users))}


def per_user_metrics(
    user_embeddings: torch.Tensor | np.ndarray,
    item_embeddings: torch.Tensor | np.ndarray,
    candidates: np.ndarray,
    ground_truth: np.ndarray,
    excluded: np.ndarray,
    k: int = 20,
    chunk_size: int = 1024,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Recall@k, NDCG@k and hit-normalised recall for one ranking task.

    Args:
        user_embeddings: ``(n_users, d)``; score(u, i) = user_embeddings[u] . item_embeddings[i].
        item_embeddings: ``(n_items, d)``.
        candidates: item ids that may be ranked.
        ground_truth: ``(n, 2)`` (user, item) pairs; items outside ``candidates`` are ignored.
        excluded: ``(n, 2)`` pairs removed from each user's ranking.
    Returns:
        the evaluated users (those with at least one ground-truth candidate, ascending) and
        ``{"recall@k", "ndcg@k", "recall_min@k"}``, one value per evaluated user: what
        paired comparisons of two methods on the same users need.
    """
    users_t = torch.as_tensor(user_embeddings, dtype=torch.float32)
    n_users = users_t.shape[0]
    # Only candidate columns are scored (the cold task ranks a tenth of the catalogue);
    # item ids become positions among the candidates.
    candidates = np.unique(candidates)
    items_t = torch.as_tensor(item_embeddings, dtype=torch.float32)[torch.from_numpy(candidates)]
    position = np.full(len(item_embeddings), -1, dtype=np.int64)
    position[candidates] = np.arange(len(candidates))
    ground_truth = _to_positions(np.unique(ground_truth, axis=0), position)
    excluded = _to_positions(excluded, position)
    gt_ptr, gt_items = _user_item_csr(ground_truth, n_users)
    ex_ptr, ex_items = _user_item_csr(excluded, n_users)
    gt_sizes = np.diff(gt_ptr)
    eval_users = np.flatnonzero(gt_sizes)
    names = (f"recall@{k}", f"ndcg@{k}", f"recall_min@{k}")
    values = np.zeros((3, len(eval_users)), dtype=np.float64)
    if len(eval_users) == 0:
        return eval_users, dict(zip(names, values, strict=True))

    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    ideal_dcg = torch.cumsum(discounts, 0)
    with torch.no_grad():
        for start in range(0, len(eval_users), chunk_size):
            users = eval_users[start : start + chunk_size]
            scores = users_t[torch.from_numpy(users)] @ items_t.T
            rows, cols = _rows_cols(users, ex_ptr, ex_items)
            scores[rows, cols] = -torch.inf
            top = torch.topk(scores, k=min(k, len(candidates)), dim=1).indices
            relevant = torch.zeros_like(scores, dtype=torch.bool)
            rows, cols = _rows_cols(users, gt_ptr, gt_items)
            relevant[rows, cols] = True
            hits = torch.gather(relevant, 1, top).to(torch.float64)
            sizes = torch.from_numpy(gt_sizes[users]).to(torch.float64)
            dcg = (hits * discounts[: hits.shape[1]]).sum(1)
            idcg = ideal_dcg[(torch.clamp(sizes, max=k) - 1).long()]
            n_hits = hits.sum(1)
            values[:, start : start + len(users)] = torch.stack(
                [n_hits / sizes, dcg / idcg, n_hits / sizes.clamp(max=k)]
            ).numpy()
    return eval_users, dict(zip(names, values, strict=True))


def _to_positions(pairs: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Pairs whose item is a candidate, with the item replaced by its candidate position."""
    positions = position[pairs[:, 1]]
    keep = positions >= 0
    return np.stack([pairs[keep, 0], positions[keep]], axis=1)


def _rows_cols(
    users: np.ndarray, indptr: np.ndarray, items: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (position in ``users``) and column (item) indices of each user's CSR entries."""
    starts, ends = indptr[users], indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = items[np.repeat(starts, lengths) + offsets]
    return torch.from_numpy(rows), torch.from_numpy(cols)


def evaluate(
    dataset: ColdStartDataset,
    user_embeddings: torch.Tensor | np.ndarray,
    item_embeddings: torch.Tensor | np.ndarray,
    stage: str = "test",
    k: int = 20,
    tasks: Sequence[str] = TASKS,
) -> dict[str, dict[str, float]]:
    """Metrics of every task in ``tasks`` at ``stage`` for inner-product embeddings."""
    per_user = evaluate_per_user(dataset, user_embeddings, item_embeddings, stage, k, tasks)
    return {task: summarize(*values) for task, values in per_user.items()}


def evaluate_per_user(
    dataset: ColdStartDataset,
    user_embeddings: torch.Tensor | np.ndarray,
    item_embeddings: torch.Tensor | np.ndarray,
    stage: str = "test",
    k: int = 20,
    tasks: Sequence[str] = TASKS,
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per task, the evaluated users and each one's metrics (:func:`per_user_metrics`)."""
    return {
        task: per_user_metrics(
            user_embeddings, item_embeddings, *task_protocol(dataset, task, stage), k=k
        )
        for task in tasks
    }


def validation_ndcg(
    dataset: ColdStartDataset,
    user_embeddings: torch.Tensor | np.ndarray,
    item_embeddings: torch.Tensor | np.ndarray,
    task: str,
) -> float:
    """NDCG@20 of ``task`` on the validation split: what early stopping and tuning maximise."""
    return evaluate(dataset, user_embeddings, item_embeddings, stage="val", tasks=(task,))[task][
        "ndcg@20"
    ]
