"""The one small interface every collaborative-filtering backbone implements.

Borrowed from RecBole's recommenders: a model knows its loss and its scores; the training
loop (models/training.py) lives outside and works for any of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class BackboneConfig:
    """Hyper-parameters shared by the backbones (saved beside their weights).

    Attributes:
        dim: embedding dimension (the paper: 200).
        reg: L2 weight on the batch's ego embeddings in the BPR loss.
        layers: propagation layers (graph backbones only).
        dropout: message dropout (NGCF only).
        init_std: standard deviation of the normal initialisation of the embeddings.
    """

    dim: int = 200
    reg: float = 1e-4
    layers: int = 3
    dropout: float = 0.1
    init_std: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class Backbone(nn.Module, ABC):
    """A CF model scored by inner products of exported user and item embeddings.

    Shapes: ``users``, ``positives``, ``negatives`` are ``(batch,)`` int64 tensors.
    """

    def __init__(self, n_users: int, n_items: int, config: BackboneConfig) -> None:
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self.config = config
        self.user_embedding = nn.Embedding(n_users, config.dim)
        self.item_embedding = nn.Embedding(n_items, config.dim)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)

    @abstractmethod
    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final ``(n_users, d')`` user and ``(n_items, d')`` item representations."""

    def calculate_loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """BPR loss (Rendle et al., 2009) plus L2 on the batch's ego embeddings: a scalar."""
        user_all, item_all = self.propagate()
        u, p, n = user_all[users], item_all[positives], item_all[negatives]
        bpr = -torch.nn.functional.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        ego = (
            self.user_embedding(users).pow(2).sum()
            + self.item_embedding(positives).pow(2).sum()
            + self.item_embedding(negatives).pow(2).sum()
        ) / len(users)
        return bpr + self.config.reg * ego

    @torch.no_grad()
    def export_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``(n_users, d')`` and ``(n_items, d')`` arrays; score = inner product."""
        was_training = self.training
        self.eval()
        users, items = self.propagate()
        self.train(was_training)
        return users.float().cpu().numpy().copy(), items.float().cpu().numpy().copy()

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """``(len(users), n_items)`` scores of every item for the given users (eval mode)."""
        user_all, item_all = self.export_embeddings()
        return torch.from_numpy(user_all[users.numpy()] @ item_all.T)
