"""Updating: the online ridge fit and the full retraining both warm cold items up."""

from __future__ import annotations

import numpy as np
import torch

from models.backbones import BackboneConfig, build_backbone
from models.baselines.common import cold_item_ids
from models.evaluation import evaluate
from models.llmins.update import (
    RIDGE_GRID,
    choose_fold_in_ridge,
    fit_item_vectors,
    fold_in,
    online_update,
    retrain_backbone,
    ridge_inverse,
)
from models.training import TrainConfig
from tests.factories import planted_dataset, trained_mf


def test_fit_item_vectors_solves_the_ridge_regression() -> None:
    rng = np.random.default_rng(0)
    users = rng.normal(size=(30, 4)).astype(np.float32)
    simulated = np.array([[1, 7], [4, 7], [9, 7], [2, 3]])
    vectors = fit_item_vectors(users, simulated, np.array([7, 3, 5]), ridge_inverse(users, 0.5))
    gram = users.astype(np.float64).T @ users
    strength = 0.5 * np.trace(gram) / 4
    target = np.zeros(30)
    target[[1, 4, 9]] = 1.0
    expected = np.linalg.solve(gram + strength * np.eye(4), users.T @ target)
    np.testing.assert_allclose(vectors[0], expected, rtol=1e-4)
    assert (vectors[2] == 0).all()
    # Graded targets: each pair's user scored its target instead of 1.
    graded = fit_item_vectors(
        users, simulated, np.array([7]), ridge_inverse(users, 0.5), np.array([0.9, 0.2, 0.5, 1.0])
    )
    target[[1, 4, 9]] = [0.9, 0.2, 0.5]
    expected = np.linalg.solve(gram + strength * np.eye(4), users.T @ target)
    np.testing.assert_allclose(graded[0], expected, rtol=1e-4)


def test_a_folded_in_user_ranks_their_held_out_items_as_a_trained_one_does() -> None:
    """Users folded in from their training items alone (the item vectors fixed) find their
    held-out warm items about as well as their trained vectors, far above chance; the
    ridge is the validation's best, and one user's vector is the ridge regression's."""
    data = planted_dataset()
    users, items = trained_mf()
    ridge, scores = choose_fold_in_ridge(data, items)
    assert scores[str(ridge)] == max(scores.values())
    inverse = ridge_inverse(items, ridge)
    pairs = data.splits["warm_train"]
    folded = np.stack(
        [fold_in(items[pairs[pairs[:, 0] == user, 1]], inverse) for user in range(data.n_users)]
    )
    recall = {
        name: evaluate(data, table, items, stage="test", tasks=("warm",))["warm"]["recall@20"]
        for name, table in (("folded", folded), ("trained", users))
    }
    chance = 20 / len(data.warm_items)
    assert recall["folded"] > 0.9 * recall["trained"] and recall["folded"] > 2 * chance
    target = np.zeros(data.n_items)
    target[pairs[pairs[:, 0] == 0, 1]] = 1.0
    gram = items.astype(np.float64).T @ items
    strength = ridge * np.trace(gram) / len(gram)
    expected = np.linalg.solve(gram + strength * np.eye(len(gram)), items.T @ target)
    np.testing.assert_allclose(folded[0], expected, rtol=1e-4, atol=1e-6)


def true_cold_pairs(data) -> np.ndarray:
    """Simulated interactions that are the real held-out ones: the best a simulator can do."""
    return np.concatenate([data.splits["cold_val"], data.splits["cold_test"]])


def cold_recall(data, users, items) -> float:
    return evaluate(data, users, items, stage="test", k=5, tasks=("cold",))["cold"]["recall@5"]


def test_online_update_turns_true_interactions_into_good_cold_vectors() -> None:
    data = planted_dataset()
    users, items = trained_mf()
    table, info = online_update(data, users, items, true_cold_pairs(data))
    assert cold_recall(data, users, table) > cold_recall(data, users, items) + 0.3
    warm = data.warm_items
    np.testing.assert_array_equal(table[warm], items[warm])
    scores = info["val_cold_ndcg_by_keep_target_and_ridge"]
    assert scores[f"keep=None,target=uniform,ridge={info['ridge']}"] == max(scores.values())
    assert {key.split("ridge=")[1] for key in scores} == {str(ridge) for ridge in RIDGE_GRID}
    # Without confidences, every kept user scores 1: the one target tried.
    assert info["target"] == "uniform"
    assert all("target=uniform" in key for key in scores)


def test_the_update_scores_kept_users_by_confidence_where_validation_says_so() -> None:
    """True cold pairs mixed with as many random ones: confidences that tell them apart
    make the confidence target win validation and rank better than the uniform fit."""
    data = planted_dataset()
    users, items = trained_mf()
    real = true_cold_pairs(data)
    rng = np.random.default_rng(0)
    noise = np.stack([rng.integers(0, data.n_users, len(real)), real[:, 1]], axis=1)
    simulated = np.concatenate([real, noise])
    confidences = np.concatenate([np.full(len(real), 0.9), np.full(len(noise), 0.1)])
    table, info = online_update(data, users, items, simulated, confidences=confidences)
    assert info["target"] == "confidence"
    scores = info["val_cold_ndcg_by_keep_target_and_ridge"]
    assert scores[f"keep=None,target=confidence,ridge={info['ridge']}"] == max(scores.values())
    uniform, _ = online_update(data, users, items, simulated, targets=("uniform",))
    assert cold_recall(data, users, table) > cold_recall(data, users, uniform)


def test_retraining_from_the_trained_backbone_keeps_warm_and_warms_cold() -> None:
    data = planted_dataset()
    torch.manual_seed(0)
    config = BackboneConfig(dim=32)
    trained = build_backbone("mf", data.n_users, data.n_items, data.splits["warm_train"], config)
    users, items = trained_mf()
    trained.user_embedding.weight.data = torch.from_numpy(users)
    trained.item_embedding.weight.data = torch.from_numpy(items)
    online, _ = online_update(data, users, items, true_cold_pairs(data))
    model, result = retrain_backbone(
        data,
        "mf",
        trained,
        true_cold_pairs(data),
        online,
        config,
        TrainConfig(lr=1e-2, batch_size=256, max_epochs=10, eval_every=2, patience=3),
        progress=False,
    )
    new_users, new_items = model.export_embeddings()
    assert cold_recall(data, new_users, new_items) > cold_recall(data, users, items) + 0.3
    assert result.history[0]["epoch"] == 0 and result.epochs_run >= 2
    assert len(cold_item_ids(data)) > 0
