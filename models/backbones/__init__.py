"""Backbone registry: name -> model class, built from a config and the training pairs."""

from __future__ import annotations

import numpy as np

from models.backbones.base import Backbone, BackboneConfig
from models.backbones.lightgcn import LightGCN
from models.backbones.mf import MF
from models.backbones.ngcf import NGCF

BACKBONES: tuple[str, ...] = ("mf", "lightgcn", "ngcf")


def build_backbone(
    name: str, n_users: int, n_items: int, train_pairs: np.ndarray, config: BackboneConfig
) -> Backbone:
    """A fresh backbone; graph models build their adjacency from ``train_pairs``."""
    if name == "mf":
        return MF(n_users, n_items, config)
    if name == "lightgcn":
        return LightGCN(n_users, n_items, config, train_pairs)
    if name == "ngcf":
        return NGCF(n_users, n_items, config, train_pairs)
    raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")


__all__ = ["BACKBONES", "Backbone", "BackboneConfig", "build_backbone"]
