"""Keep the parameters of the best validation score and say when to stop.

Shared by the backbone trainer and the content generators, so "best state, patience, restore"
is written once.
"""

from __future__ import annotations

import copy

from torch import nn


class EarlyStopping:
    """Tracks the best validation score of ``module`` and a copy of its parameters then.

    Args:
        module: the model (or group of models) being trained.
        patience: validations without improvement after which :attr:`should_stop` is true.
    """

    def __init__(self, module: nn.Module, patience: int) -> None:
        self.module = module
        self.patience = patience
        self.best_score = float("-inf")
        self.best_epoch = 0
        self.stale = 0
        self._best_state = copy.deepcopy(module.state_dict())

    def update(self, score: float, epoch: int) -> None:
        """Record one validation; a strictly better score becomes the new best."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = float(score), epoch, 0
            self._best_state = copy.deepcopy(self.module.state_dict())
        else:
            self.stale += 1

    @property
    def should_stop(self) -> bool:
        return self.stale >= self.patience

    def restore_best(self) -> None:
        """Load the best parameters back and leave the module in eval mode."""
        self.module.load_state_dict(self._best_state)
        self.module.eval()
