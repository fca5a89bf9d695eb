"""Probe, validation only: would the online update rank cold items better if it weighted
the simulated users above every other user, as implicit ALS does (Hu, Koren & Volinsky
2008)?

Today's update (``models.llmins.update``) solves one ridge regression per item with every
user weighed alike: ``v = (U^T U + lam I)^-1 sum_S t_u u``. Weighting the item's simulated
users ``1 + alpha`` (``uniform``/``confidence``: their target 1 or the refiner's
probability) or ``1 + alpha p_u`` (``ials``: target 1, weight from the probability) gives
``v = (U^T U + alpha U_S^T W U_S + lam I)^-1 sum_S (1 + alpha w_u) t_u u``, one d x d solve
per item. ``alpha`` 0 is today's fit. For each (mode, alpha), the best cold validation
NDCG@20 over the kept counts and ridges the update tries, then with the best prior blend.

The pipeline is ``llmins`` with ``lm=never`` (both data sets' validation leave the LM out)
and the online update, MF backbone, seed 0. Prints and saves JSON. Example:

    python bench/probe_update_weights.py --dataset ml-100k --data-dir ../shared/data \\
        --out runs/probe-update-weights-ml.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.baselines.common import cold_item_ids
from models.benchmark import BenchmarkConfig
from models.data import DATASETS, load_dataset
from models.encoders import MeanPoolEncoder, encode_cached
from models.evaluation import validation_ndcg
from models.llmins.pipeline import simulate
from models.llmins.update import BLEND_GRID, RIDGE_GRID, Blend, kept_mask
from models.llmins.variants import VARIANTS
from models.llmins.workbench import Workbench
from models.runs import train_backbone
from models.training import tuned_configs
from services.settings import get_settings

MODES = ("uniform", "confidence", "ials")
ALPHAS = (0.0, 1.0, 4.0, 16.0, 64.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    dataset = load_dataset(args.dataset, args.data_dir, seed=0)
    cache = str(get_settings().cache_dir)
    content = encode_cached(MeanPoolEncoder(None), dataset.item_texts, cache, False)
    backbone_config, train_config = tuned_configs("mf")
    config = BenchmarkConfig(
        backbone="mf",
        methods=("llmins",),
        seeds=(0,),
        backbone_config=backbone_config,
        train_config=train_config,
        cache_dir=cache,
        progress=False,
    )
    backbone, _ = train_backbone(dataset, config, 0)
    users, items = backbone.model.export_embeddings()
    bench = Workbench(dataset, content, users, items, 0, progress=False)
    variant = replace(VARIANTS["llmins"], lm="never", update="online")
    simulation = simulate(bench, variant)
    priors = bench.priors(variant)
    cold = cold_item_ids(dataset)

    def cold_ndcg(rows: np.ndarray) -> float:
        table = items.copy()
        table[cold] = rows
        return validation_ndcg(dataset, users, table, "cold")

    fits = {}
    for keep in simulation.info["keep_choices"]:
        mask = kept_mask(simulation.ranks, keep, len(simulation.pairs))
        for mode in MODES:
            for alpha in ALPHAS:
                for ridge, fitted in weighted_fits(
                    users, simulation.pairs[mask], simulation.confidences[mask], cold, mode, alpha
                ):
                    fits[(mode, alpha, keep, ridge)] = (cold_ndcg(fitted), fitted)
    rows = []
    for mode in MODES:
        for alpha in ALPHAS:
            key = max((k for k in fits if k[:2] == (mode, alpha)), key=lambda k: fits[k][0])
            score, fitted = fits[key]
            blended, blend = score, "none"
            fitted_norm = float(np.linalg.norm(fitted, axis=1).mean())
            for source, prior in priors.items():
                prior_norm = float(np.linalg.norm(prior[cold], axis=1).mean())
                for weight in BLEND_GRID[1:]:
                    mix = Blend(weight, fitted_norm, prior_norm, source)
                    value = cold_ndcg(mix.apply(fitted, prior[cold]))
                    if value > blended:
                        blended, blend = value, f"{source} {weight}"
            row = {
                "mode": mode,
                "alpha": alpha,
                "keep": key[2],
                "ridge": key[3],
                "val_cold_ndcg@20": score,
                "blend": blend,
                "val_cold_ndcg@20_blended": blended,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    record = {"dataset": args.dataset, "seconds": time.perf_counter() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def weighted_fits(
    users: np.ndarray,
    pairs: np.ndarray,
    confidences: np.ndarray,
    cold: np.ndarray,
    mode: str,
    alpha: float,
):
    """(ridge, cold rows) for every ridge of the update's grid, at one weighting."""
    table = users.astype(np.float64)
    gram = table.T @ table
    strength = np.trace(gram) / len(gram)
    position = {int(item): row for row, item in enumerate(cold)}
    rows = np.array([position[int(item)] for item in pairs[:, 1]])
    order = np.argsort(rows, kind="stable")
    rows, pairs, confidences = rows[order], pairs[order], confidences[order]
    bounds = np.searchsorted(rows, np.arange(len(cold) + 1))
    targets = confidences if mode == "confidence" else np.ones(len(pairs))
    extra = alpha * (confidences if mode == "ials" else np.ones(len(pairs)))
    second = np.zeros((len(cold), *gram.shape))
    sums = np.zeros((len(cold), len(gram)))
    for row in range(len(cold)):
        chosen = slice(bounds[row], bounds[row + 1])
        kept = table[pairs[chosen, 0]]
        second[row] = (kept * extra[chosen, None]).T @ kept
        sums[row] = ((1 + extra[chosen]) * targets[chosen]) @ kept
    for ridge in RIDGE_GRID:
        system = gram[None] + ridge * strength * np.eye(len(gram))[None] + second
        yield ridge, np.linalg.solve(system, sums[..., None])[..., 0].astype(np.float32)


if __name__ == "__main__":
    main()
