"""The refiner's fit, the selection of kept candidates and the paired statistics."""

from __future__ import annotations

import numpy as np
import pytest

from models.llmins.filtering import choose_weights, merge, precision_at, top_users
from models.llmins.refine import fit_refiner, paired_difference, per_item_auc, select


def test_refiner_puts_its_weight_on_the_informative_feature() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 30, 3))
    labels = (features[..., 1] + 0.3 * rng.normal(size=(200, 30)) > 1.0).astype(int)
    refiner = fit_refiner(features, labels, ["noise", "signal", "more noise"])
    weights = refiner.describe()
    assert weights["signal"] > 5 * max(abs(weights["noise"]), abs(weights["more noise"]))
    auc = np.nanmean(per_item_auc(refiner.logits(features), labels))
    assert auc > 0.9


def test_refiner_rejects_mismatched_names_and_one_class_labels() -> None:
    features = np.zeros((4, 5, 2))
    with pytest.raises(ValueError, match="names"):
        fit_refiner(features, np.ones((4, 5)), ["one"])
    with pytest.raises(ValueError, match="both"):
        fit_refiner(features, np.ones((4, 5)), ["a", "b"])


def test_select_keeps_the_best_per_item_and_honours_the_threshold() -> None:
    scores = np.array([[3.0, -1.0, 2.0, 0.5], [-2.0, -3.0, -0.1, 4.0]])
    np.testing.assert_array_equal(
        select(scores, keep=2), [[True, False, True, False], [False, False, True, True]]
    )
    np.testing.assert_array_equal(
        select(scores, threshold=0.5), [[True, False, True, True], [False, False, False, True]]
    )
    np.testing.assert_array_equal(select(scores, keep=1, threshold=0.5).sum(1), [1, 1])
    with pytest.raises(ValueError):
        select(scores)


def test_per_item_auc_matches_pairwise_counting() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], [0.2, 0.3, 0.1, 0.0]])
    labels = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    auc = per_item_auc(scores, labels)
    assert auc[0] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert np.isnan(auc[1])
    assert auc[2] == pytest.approx(2 / 3)


def test_paired_difference_reports_mean_and_standard_error() -> None:
    a = np.array([0.5, 0.7, np.nan, 0.9])
    b = np.array([0.4, 0.5, 0.3, 0.6])
    result = paired_difference(a, b)
    differences = np.array([0.1, 0.2, 0.3])
    assert result["items"] == 3
    assert result["mean"] == pytest.approx(differences.mean())
    assert result["se"] == pytest.approx(differences.std(ddof=1) / np.sqrt(3))


def test_choose_weights_finds_the_signal_that_predicts_the_truth() -> None:
    rng = np.random.default_rng(1)
    truth = [set(rng.choice(50, 5, replace=False).tolist()) for _ in range(30)]
    informative = rng.normal(size=(30, 50))
    for row, users in enumerate(truth):
        informative[row, list(users)] += 3.0
    signals = {"collaborative": rng.normal(size=(30, 50)), "history": informative}
    weights, tried = choose_weights(signals, truth, k=5, allowed=("collaborative", "history"))
    assert weights["history"] == 1.0 and weights["collaborative"] < 1.0
    assert len(tried) == 7
    assert tried["collaborative=1.0,history=0.0"] < 0.3
    assert precision_at(top_users(merge(signals, weights), 5), truth).mean() > 0.7
