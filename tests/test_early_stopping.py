"""EarlyStopping keeps the best parameters and stops after `patience` worse validations."""

from __future__ import annotations

import torch
from torch import nn

from models.early_stopping import EarlyStopping


def test_restores_the_best_parameters_and_counts_patience() -> None:
    layer = nn.Linear(2, 1)
    stopping = EarlyStopping(layer, patience=2)
    for epoch, score in enumerate([0.1, 0.5, 0.4, 0.5], start=1):
        with torch.no_grad():
            layer.weight.fill_(float(epoch))
        stopping.update(score, epoch)
    # 0.5 at epoch 2 is the best; a tie at epoch 4 is not an improvement.
    assert stopping.best_epoch == 2 and stopping.best_score == 0.5
    assert stopping.should_stop
    stopping.restore_best()
    assert torch.all(layer.weight == 2.0)
    assert not layer.training


def test_improvement_resets_patience() -> None:
    stopping = EarlyStopping(nn.Linear(1, 1), patience=2)
    for epoch, score in enumerate([0.3, 0.2, 0.4, 0.3], start=1):
        stopping.update(score, epoch)
    assert not stopping.should_stop
    assert stopping.best_epoch == 3
