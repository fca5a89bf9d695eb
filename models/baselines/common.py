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


#: Multiples of the warm items' mean norm tried for generated cold rows (besides "raw").
SCALE_FACTORS: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5)


def choose_cold_scale(
    dataset: ColdStartDataset, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Keep generated cold rows as they are, or give each a multiple of the warm mean norm.

    A generated row's direction says which users it suits; its length decides whether it
    can compete with warm items in the overall task. The choice is the candidate with the
    best overall *validation* NDCG@20 (never test data); every candidate's score is
    reported.
    """
    cold = cold_item_ids(dataset)
    warm_norm = float(np.linalg.norm(items[dataset.warm_items], axis=1).mean())
    candidates = {"raw": items}
    for factor in SCALE_FACTORS:
        rescaled = items.copy()
        rescaled[cold] = rescale_to_norm(items[cold], factor * warm_norm)
        candidates[f"warm_norm*{factor}"] = rescaled
    scores = {
        name: validation_ndcg(dataset, users, table, "overall")
        for name, table in candidates.items()
    }
    best = max(scores, key=scores.__getitem__)
    info = {
        "warm_item_norm": warm_norm,
        "generated_cold_norm": float(np.linalg.norm(items[cold], axis=1).mean()),
        "val_overall_ndcg_by_scale": scores,
        "cold_scale": best,
    }
    return candidates[best], info
