"""LightGCN: linear propagation over the user-item graph, layer outputs averaged.

He, Deng, Wang, Li, Zhang & Wang, "LightGCN: Simplifying and Powering Graph Convolution
Network for Recommendation", SIGIR 2020.
"""

from __future__ import annotations

import torch

from models.backbones.graph import GraphBackbone, propagate


class LightGCN(GraphBackbone):
    """E^(k+1) = A_hat E^(k); final = mean of E^(0..L)."""

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.ego_embeddings()
        total = layer
        for _ in range(self.config.layers):
            layer = propagate(self.adjacency, layer)
            total = total + layer
        final = total / (self.config.layers + 1)
        return final[: self.n_users], final[self.n_users :]
