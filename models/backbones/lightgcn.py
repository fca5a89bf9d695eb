"""LightGCN: linear propagation over the user-item graph, layer outputs averaged.

He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph Convolution
Network for Recommendation", SIGIR 2020.
"""

from __future__ import annotations

import numpy as np
import torch

from models.backbones.base import Backbone, BackboneConfig
from models.backbones.graph import normalized_adjacency, propagate


class LightGCN(Backbone):
    """E^(k+1) = A_hat E^(k); final = mean of E^(0..L)."""

    def __init__(
        self, n_users: int, n_items: int, config: BackboneConfig, train_pairs: np.ndarray
    ) -> None:
        super().__init__(n_users, n_items, config)
        self.register_buffer(
            "adjacency", normalized_adjacency(train_pairs, n_users, n_items), persistent=False
        )

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        layer = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = layer
        for _ in range(self.config.layers):
            layer = propagate(self.adjacency, layer)
            total = total + layer
        final = total / (self.config.layers + 1)
        return final[: self.n_users], final[self.n_users :]
