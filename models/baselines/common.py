"""Putting generated cold-item embeddings beside the backbone's warm ones, and scoring them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.baselines.generator import rescale_to_norm
from models.data.dataset import ColdStartDataset
from models.evaluation import evaluate


@dataclass
class ColdStartEmbeddings:
    """What a cold-start method hands to evaluation and export.

    ``users`` and ``items`` score by inner product; rows are user and item ids. ``info``
    holds what the method chose and measured (epochs, validation scores, scale mode).
    """

    users: np.ndarray
    items: np.ndarray
    info: dict = field(default_factory=dict)


def cold_item_ids(dataset: ColdStartDataset) -> np.ndarray:
    """Every cold item (validation and test): a method embeds them all from content."""
    return np.union1d(dataset.cold_val_items, dataset.cold_test_items)


def validation_ndcg(dataset: ColdStartDataset, users: np.ndarray, items: np.ndarray, task: str):
    """NDCG@20 of ``task`` on the validation split (what early stopping maximises)."""
    return evaluate(dataset, users, items, stage="val", tasks=(task,))[task]["ndcg@20"]


def choose_cold_scale(
    dataset: ColdStartDataset, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Keep generated cold rows as they are, or rescale each to the warm rows' mean norm.

    The choice is the one with the better overall validation NDCG@20 (never test data).
    """
    cold = cold_item_ids(dataset)
    warm_norm = float(np.linalg.norm(items[dataset.warm_items], axis=1).mean())
    cold_norm = float(np.linalg.norm(items[cold], axis=1).mean())
    rescaled = items.copy()
    rescaled[cold] = rescale_to_norm(items[cold], warm_norm)
    raw_score = validation_ndcg(dataset, users, items, "overall")
    rescaled_score = validation_ndcg(dataset, users, rescaled, "overall")
    info = {
        "warm_item_norm": warm_norm,
        "generated_cold_norm": cold_norm,
        "val_overall_ndcg_raw": raw_score,
        "val_overall_ndcg_rescaled": rescaled_score,
        "cold_scale": "rescaled" if rescaled_score > raw_score else "raw",
    }
    return (rescaled if rescaled_score > raw_score else items), info
