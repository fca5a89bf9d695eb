"""The vectorised metrics agree with a plain-Python reference, and the protocol is right."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.data.synthetic import make_synthetic
from models.evaluation import evaluate, rank_metrics, task_protocol


def reference_metrics(users, items, candidates, ground_truth, excluded, k):
    """Textbook Recall@k / NDCG@k, one user at a time, no vectorisation."""
    candidates = set(int(i) for i in candidates)
    truth: dict[int, set[int]] = {}
    for u, i in ground_truth:
        if int(i) in candidates:
            truth.setdefault(int(u), set()).add(int(i))
    seen: dict[int, set[int]] = {}
    for u, i in excluded:
        seen.setdefault(int(u), set()).add(int(i))
    recalls, ndcgs, recall_mins = [], [], []
    for user, relevant in truth.items():
        ranked = sorted(
            (i for i in candidates if i not in seen.get(user, set())),
            key=lambda i: -float(np.dot(users[user], items[i])),
        )[:k]
        hits = [1.0 if i in relevant else 0.0 for i in ranked]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
        recalls.append(sum(hits) / len(relevant))
        recall_mins.append(sum(hits) / min(k, len(relevant)))
        ndcgs.append(dcg / idcg)
    return np.mean(recalls), np.mean(ndcgs), np.mean(recall_mins), len(truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_rank_metrics_match_reference(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 60
    users = rng.normal(size=(n_users, 8)).astype(np.float32)
    items = rng.normal(size=(n_items, 8)).astype(np.float32)
    candidates = np.sort(rng.choice(n_items, size=45, replace=False))
    ground_truth = np.stack([rng.integers(n_users, size=150), rng.integers(n_items, size=150)], 1)
    excluded = np.stack([rng.integers(n_users, size=200), rng.integers(n_items, size=200)], 1)
    # A pair both excluded and in the ground truth must not count as a hit.
    ground_truth = np.concatenate([ground_truth, excluded[:5]])

    got = rank_metrics(users, items, candidates, ground_truth, excluded, k=k, chunk_size=7)
    recall, ndcg, recall_min, n_eval = reference_metrics(
        users, items, candidates, ground_truth, excluded, k
    )
    assert got["users"] == n_eval
    assert got[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
    assert got[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
    assert got[f"recall_min@{k}"] == pytest.approx(recall_min, abs=1e-6)


def test_perfect_and_reversed_rankings() -> None:
    """A scorer that puts exactly the ground truth first scores 1; its reverse scores 0."""
    n_users, n_items = 5, 50
    relevant = {u: list(range(u * 3, u * 3 + 3)) for u in range(n_users)}
    items = np.eye(n_items, dtype=np.float32)
    users = np.zeros((n_users, n_items), dtype=np.float32)
    for u, its in relevant.items():
        users[u, its] = 1.0
    truth = np.array([(u, i) for u, its in relevant.items() for i in its])
    none = np.zeros((0, 2), dtype=np.int64)
    perfect = rank_metrics(users, items, np.arange(n_items), truth, none, k=20)
    worst = rank_metrics(-users, items, np.arange(n_items), truth, none, k=20)
    assert perfect["recall@20"] == pytest.approx(1.0)
    assert perfect["ndcg@20"] == pytest.approx(1.0)
    assert worst["recall@20"] == 0.0 and worst["ndcg@20"] == 0.0


def test_excluded_items_never_ranked() -> None:
    """Excluding the best-scored items lets the next ones in; their hits count."""
    users = np.ones((1, 1), dtype=np.float32)
    items = np.arange(10, dtype=np.float32)[:, None]  # item 9 scores highest
    truth = np.array([[0, 7]])
    excluded = np.array([[0, 9], [0, 8]])
    result = rank_metrics(users, items, np.arange(10), truth, excluded, k=1)
    assert result["recall@1"] == 1.0


def test_protocol_tasks() -> None:
    data = make_synthetic(seed=3)
    warm_c, warm_gt, warm_ex = task_protocol(data, "warm", "test")
    cold_c, cold_gt, _ = task_protocol(data, "cold", "test")
    all_c, all_gt, _ = task_protocol(data, "overall", "test")
    np.testing.assert_array_equal(warm_c, data.warm_items)
    np.testing.assert_array_equal(cold_c, data.cold_test_items)
    np.testing.assert_array_equal(all_c, np.union1d(data.warm_items, data.cold_test_items))
    assert len(all_gt) == len(warm_gt) + len(cold_gt)
    # At test time training and validation interactions are excluded; at validation, training.
    assert len(warm_ex) == len(data.splits["warm_train"]) + len(data.splits["warm_val"])
    _, val_gt, val_ex = task_protocol(data, "cold", "val")
    assert len(val_ex) == len(data.splits["warm_train"])
    assert set(val_gt[:, 1]) <= set(data.cold_val_items)
    with pytest.raises(ValueError):
        task_protocol(data, "lukewarm", "test")


def test_evaluate_skips_users_without_ground_truth() -> None:
    data = make_synthetic(seed=4)
    rng = np.random.default_rng(0)
    result = evaluate(data, rng.normal(size=(data.n_users, 4)), rng.normal(size=(data.n_items, 4)))
    cold_users = len(np.unique(data.splits["cold_test"][:, 0]))
    assert result["cold"]["users"] == cold_users
    for task in ("overall", "cold", "warm"):
        assert 0.0 <= result[task]["recall@20"] <= 1.0
        assert 0.0 <= result[task]["ndcg@20"] <= 1.0
