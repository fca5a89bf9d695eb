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


#: Mean norms tried for generated cold rows, as multiples of the warm items' mean norm.
SCALE_FACTORS: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def choose_cold_scale(
    dataset: ColdStartDataset, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Choose the length of generated cold rows on the overall *validation* NDCG@20.

    A generated row's direction says which users it suits; its length decides whether it
    can compete with warm items in the overall task, where a regression onto warm embeddings
    comes out too short. Two families of candidates, each at every factor of
    :data:`SCALE_FACTORS` times the warm mean norm: ``raw`` scales all cold rows by one
    number (their relative lengths kept), ``unit`` gives every cold row the same length (the
    generator's confidence dropped). Every candidate's score is reported; test data is never
    read.
    """
    cold = cold_item_ids(dataset)
    warm_norm = float(np.linalg.norm(items[dataset.warm_items], axis=1).mean())
    cold_norm = float(np.linalg.norm(items[cold], axis=1).mean())
    candidates = {}
    for factor in SCALE_FACTORS:
        raw = items.copy()
        raw[cold] *= factor * warm_norm / max(cold_norm, 1e-12)
        candidates[f"raw*{factor}"] = raw
        unit = items.copy()
        unit[cold] = rescale_to_norm(items[cold], factor * warm_norm)
        candidates[f"unit*{factor}"] = unit
    scores = {
        name: validation_ndcg(dataset, users, table, "overall")
        for name, table in candidates.items()
    }
    best = max(scores, key=scores.__getitem__)
    info = {
        "warm_item_norm": warm_norm,
        "generated_cold_norm": cold_norm,
        "val_overall_ndcg_by_scale": scores,
        "cold_scale": best,
    }
    return candidates[best], info
