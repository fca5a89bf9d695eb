"""NGCF: graph convolution with feature transforms and bi-interaction messages.

Wang, He, Wang, Feng & Chua, "Neural Graph Collaborative Filtering", SIGIR 2019.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.backbones.base import BackboneConfig
from models.backbones.graph import GraphBackbone, propagate


class NGCF(GraphBackbone):
    """E^(k+1) = LeakyReLU((A_hat + I) E W1 + (A_hat E) * E W2); final = concat of layers.

    The exported representations have dimension ``dim * (layers + 1)``.
    """

    def __init__(
        self, n_users: int, n_items: int, config: BackboneConfig, train_pairs: np.ndarray
    ) -> None:
        super().__init__(n_users, n_items, config, train_pairs)
        self.transforms = nn.ModuleList(
            nn.Linear(config.dim, config.dim) for _ in range(config.layers)
        )
        self.interactions = nn.ModuleList(
            nn.Linear(config.dim, config.dim) for _ in range(config.layers)
        )
        self.dropout = nn.Dropout(config.dropout)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.ego_embeddings()
        outputs = [layer]
        for transform, interaction in zip(self.transforms, self.interactions, strict=True):
            neighbours = propagate(self.adjacency, layer)
            message = transform(neighbours + layer) + interaction(neighbours * layer)
            layer = self.dropout(nn.functional.leaky_relu(message, 0.2))
            outputs.append(nn.functional.normalize(layer, dim=1))
        final = torch.cat(outputs, dim=1)
        return final[: self.n_users], final[self.n_users :]
