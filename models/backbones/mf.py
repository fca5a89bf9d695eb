"""Matrix factorisation trained with BPR.

Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
Implicit Feedback", UAI 2009.
"""

from __future__ import annotations

import torch

from models.backbones.base import Backbone


class MF(Backbone):
    """Embeddings are the representations: score(u, i) = e_u . e_i."""

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight
