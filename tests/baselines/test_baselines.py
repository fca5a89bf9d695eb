"""DeepMusic and ALDI learn cold embeddings from content and leave warm items alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.baselines.aldi import AldiConfig, aldi_losses, fit_aldi
from models.baselines.common import SCALE_FACTORS, choose_cold_scale, cold_item_ids
from models.baselines.deepmusic import fit_deepmusic
from models.baselines.generator import (
    ContentMLP,
    GeneratorConfig,
    fit_with_early_stopping,
    rescale_to_norm,
)
from models.evaluation import evaluate
from tests.factories import bag_of_words, planted_dataset, trained_mf

CONFIG = GeneratorConfig(hidden=32, batch_size=128, max_epochs=30, patience=5)


@pytest.fixture(scope="module")
def setting():
    data = planted_dataset()
    users, items = trained_mf()
    return data, bag_of_words(data.item_texts), users, items


def cold_recall(data, users, items) -> float:
    """Recall@5: the toy data set has only 20 cold test items, so @20 would be trivial."""
    return evaluate(data, users, items, stage="test", k=5, tasks=("cold",))["cold"]["recall@5"]


@pytest.mark.parametrize("fit", [fit_deepmusic, fit_aldi], ids=["deepmusic", "aldi"])
def test_cold_items_beat_untrained_embeddings(fit, setting) -> None:
    data, content, users, items = setting
    result = fit(data, content, users, items, CONFIG, progress=False)
    backbone_only = cold_recall(data, users, items)
    generated = cold_recall(data, result.users, result.items)
    assert generated > backbone_only + 0.15
    assert result.info["best_epoch"] >= 1
    assert result.info["cold_scale"] in result.info["val_overall_ndcg_by_scale"]


@pytest.mark.parametrize("fit", [fit_deepmusic, fit_aldi], ids=["deepmusic", "aldi"])
def test_warm_scores_are_the_backbones(fit, setting) -> None:
    data, content, users, items = setting
    result = fit(data, content, users, items, CONFIG, progress=False)
    warm = data.warm_items
    np.testing.assert_allclose(
        result.users @ result.items[warm].T, users @ items[warm].T, rtol=1e-5, atol=1e-5
    )
    assert result.users.shape[0] == data.n_users
    assert result.items.shape[0] == data.n_items


def test_aldi_losses_vanish_when_student_equals_teacher() -> None:
    """Rating distance is zero and the distillation terms are at their minimum (zero gradient)."""
    torch.manual_seed(0)
    user, pos, neg = (torch.randn(16, 8) for _ in range(3))
    student = [t.clone().requires_grad_(True) for t in (user, pos, neg)]
    terms = aldi_losses(user, pos, neg, *student)
    assert terms["rating"].item() == pytest.approx(0.0)
    (terms["ranking"] + terms["identity"]).backward()
    for tensor in student:
        assert tensor.grad.abs().max().item() < 1e-6


def test_aldi_identity_term_is_each_item_against_every_negative_of_the_batch() -> None:
    """The identity term is computed through the negatives' mean; it must equal the
    definition: g_i . g_i minus the mean of g_i . g_j over the batch's negatives j."""
    torch.manual_seed(1)
    user, pos, neg, student_pos, student_neg = (
        torch.randn(12, 6, dtype=torch.float64) for _ in range(5)
    )

    def identity(items: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        rows = [
            items[i] @ items[i] - torch.stack([items[i] @ n for n in negatives]).mean()
            for i in range(len(items))
        ]
        return torch.stack(rows)

    expected = F.binary_cross_entropy_with_logits(
        identity(student_pos, student_neg), torch.sigmoid(identity(pos, neg))
    )
    terms = aldi_losses(user, pos, neg, user, student_pos, student_neg)
    assert terms["identity"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_aldi_with_user_mapping_and_frequency_weights(setting) -> None:
    """The paper's variant: a student user space joined to the teacher's by concatenation."""
    data, content, users, items = setting
    paper = AldiConfig(frequency_weighting=True, map_users=True)
    result = fit_aldi(data, content, users, items, CONFIG, paper, progress=False)
    assert np.isfinite(result.items).all()
    assert result.users.shape[1] == 2 * users.shape[1] == result.items.shape[1]
    assert result.info["aldi"]["frequency_weighting"] is True
    warm = data.warm_items
    np.testing.assert_allclose(
        result.users @ result.items[warm].T, users @ items[warm].T, rtol=1e-5, atol=1e-5
    )
    assert cold_recall(data, result.users, result.items) > cold_recall(data, users, items)


def test_rescale_and_scale_choice(setting) -> None:
    data, _, users, items = setting
    rows = rescale_to_norm(np.array([[3.0, 4.0], [0.0, 0.5]]), 2.0)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), [2.0, 2.0])
    cold = cold_item_ids(data)
    shrunk = items.copy()
    shrunk[cold] *= 0.01  # cold rows far shorter than warm ones
    chosen, info = choose_cold_scale(data, users, shrunk)
    assert info["generated_cold_norm"] < info["warm_item_norm"]
    scores = info["val_overall_ndcg_by_scale"]
    assert set(scores) == {f"{mode}*{f}" for mode in ("raw", "unit") for f in SCALE_FACTORS}
    picked = evaluate(data, users, chosen, stage="val", tasks=("overall",))["overall"]["ndcg@20"]
    assert picked == pytest.approx(max(scores.values()))
    assert scores[info["cold_scale"]] == max(scores.values())


def test_training_scored_from_its_start_keeps_the_start_when_no_epoch_beats_it() -> None:
    """What lets a refit (a refresh's) come back unchanged when training does not help."""
    torch.manual_seed(0)
    network = ContentMLP(4, 2, 8)
    start = {key: value.clone() for key, value in network.state_dict().items()}
    inputs, targets = torch.randn(64, 4), torch.randn(64, 2)
    scores = iter([1.0, 0.5, 0.4, 0.3])  # the start, then every epoch worse

    def batch_loss(batch: np.ndarray) -> torch.Tensor:
        return F.mse_loss(network(inputs[batch]), targets[batch])

    config = GeneratorConfig(lr=1e-1, batch_size=16, max_epochs=10, patience=3)
    info = fit_with_early_stopping(
        network,
        64,
        batch_loss,
        lambda: next(scores),
        config,
        "refit",
        progress=False,
        validate_start=True,
    )
    assert (info["best_epoch"], info["start_val"], info["epochs_run"]) == (0, 1.0, 3)
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, start[key])
