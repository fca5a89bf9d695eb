"""Putting generated cold-item embeddings beside the backbone's warm ones, and scoring them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.baselines.generator import ContentMap, GeneratorConfig, rescale_to_norm
from models.data.dataset import ColdStartDataset
from models.evaluation import validation_ndcg

logger = logging.getLogger(__name__)


@dataclass
class ColdStartEmbeddings:
    """What a cold-start method hands to evaluation and export.

    ``users`` and ``items`` score by inner product; rows are user and item ids. ``info``
    holds what the method chose and measured (epochs, validation scores, scale mode).
    ``content_map`` embeds items that did not exist at training time (before any length
    choice), where the method has one.
    """

    users: np.ndarray
    items: np.ndarray
    info: dict = field(default_factory=dict)
    content_map: ContentMap | None = None


def cold_item_ids(dataset: ColdStartDataset) -> np.ndarray:
    """Every cold item (validation and test): a method embeds them all from content."""
    return np.union1d(dataset.cold_val_items, dataset.cold_test_items)


def best_on_validation(
    name: str,
    dataset: ColdStartDataset,
    grid: Sequence[GeneratorConfig],
    fit: Callable[[GeneratorConfig], ColdStartEmbeddings],
) -> ColdStartEmbeddings:
    """``fit`` with each setting of ``grid``; the best by cold *validation* NDCG@20.

    One rule for every content-to-embedding generator (the baselines and LLM-InS's
    collaborative subtower), so that none of them runs on another data set's choice. The
    criterion is the one LLM-InS's own choices use; ``info["grid"]`` records every
    candidate's score and ``info["generator"]`` the chosen settings.
    """
    best: ColdStartEmbeddings | None = None
    best_score = -np.inf
    tried = []
    for generator in grid:
        result = fit(generator)
        score = validation_ndcg(dataset, result.users, result.items, "cold")
        tried.append({"lr": generator.lr, "dropout": generator.dropout, "val_cold_ndcg@20": score})
        logger.info("%s lr %g dropout %g: val cold NDCG@20 %.4f", name, generator.lr,
                    generator.dropout, score)  # fmt: skip
        if score > best_score:
            best, best_score = result, score
            best.info["generator"] = generator.to_dict()
    if best is None:
        raise ValueError(f"{name}: the grid of settings is empty")
    best.info["grid"] = tried
    return best


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

    def scaled(mode: str, factor: float) -> np.ndarray:
        table = items.copy()
        if mode == "raw":
            table[cold] *= factor * warm_norm / max(cold_norm, 1e-12)
        else:
            table[cold] = rescale_to_norm(items[cold], factor * warm_norm)
        return table

    # One candidate table at a time: only the best is kept in memory.
    scores: dict[str, float] = {}
    best, best_table = "", items
    for factor in SCALE_FACTORS:
        for mode in ("raw", "unit"):
            name, table = f"{mode}*{factor}", scaled(mode, factor)
            scores[name] = validation_ndcg(dataset, users, table, "overall")
            if not best or scores[name] > scores[best]:
                best, best_table = name, table
    info = {
        "warm_item_norm": warm_norm,
        "generated_cold_norm": cold_norm,
        "val_overall_ndcg_by_scale": scores,
        "cold_scale": best,
    }
    return best_table, info
