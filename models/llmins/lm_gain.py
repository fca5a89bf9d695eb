"""Does the simulator add to the refiner? Measured among each list's best candidates, on a
sample of cold items per stage, with paired standard errors: what ``lm="auto"`` decides on.
"""

from __future__ import annotations

import numpy as np

from models.llmins.refine import (
    Refiner,
    fit_refiner,
    paired_difference,
    per_item_auc,
    per_item_precision,
)
from models.llmins.variants import LLMInSConfig
from models.llmins.workbench import Workbench


def lm_sample(bench: Workbench, count: int, n_items: int, stage: str) -> np.ndarray:
    rng = np.random.default_rng(bench.seed + (0 if stage == "val" else 1))
    return np.sort(rng.choice(n_items, size=min(count, n_items), replace=False))


def measure_lm_gain(
    bench: Workbench,
    config: LLMInSConfig,
    lists: dict[str, dict],
    names: list[str],
    refiner: Refiner,
    info: dict,
) -> bool:
    """Does the simulator's logit rank candidates better than the refiner without it?

    On a sample of items per stage, within the refiner's best ``lm_candidates`` of each list,
    compare per-item AUC and precision@keep of: the refiner without the LM, the LM alone, and
    the refiner refitted with the LM as a feature (fitted on the validation sample,
    out of fold there). Returns whether validation showed a gain beyond two standard errors.
    """
    training = config.simulator_training
    measured: dict[str, dict] = {}
    features_by_stage = {}
    for stage, data in lists.items():
        rows = lm_sample(bench, config.lm_items, len(data["items"]), stage)
        order = np.argsort(-data["scores"][rows], axis=1, kind="stable")[:, : config.lm_candidates]
        candidates = np.take_along_axis(data["candidates"][rows], order, axis=1)
        logits = bench.lm_logits(training, stage, rows, candidates)
        features = np.take_along_axis(data["features"][rows], order[..., None], axis=1)
        features_by_stage[stage] = (
            np.concatenate([features, logits[..., None]], axis=-1),
            np.take_along_axis(data["labels"][rows], order, axis=1),
            np.take_along_axis(data["scores"][rows], order, axis=1),
        )
    val_features, val_labels, _ = features_by_stage["val"]
    with_lm_names = [*names, "lm"]
    halves = np.arange(len(val_labels)) % 2
    for stage, (features, labels, without) in features_by_stage.items():
        if stage == "val":
            with_lm = np.zeros(labels.shape)
            for half in (0, 1):
                fitted = fit_refiner(
                    val_features[halves != half], val_labels[halves != half], with_lm_names
                )
                with_lm[halves == half] = fitted.logits(val_features[halves == half])
        else:
            fitted = fit_refiner(val_features, val_labels, with_lm_names)
            with_lm = fitted.logits(features)
            info["refiner_with_lm_weights"] = fitted.describe()
        lm_alone = features[..., -1]
        keep = config.keep or 20
        auc = {
            "without_lm": per_item_auc(without, labels),
            "with_lm": per_item_auc(with_lm, labels),
            "lm_alone": per_item_auc(lm_alone, labels),
        }
        precision = {
            name: per_item_precision(score, labels, keep)
            for name, score in (
                ("without_lm", without),
                ("with_lm", with_lm),
                ("lm_alone", lm_alone),
            )
        }
        measured[stage] = {
            "items": int(len(labels)),
            "candidates_per_item": int(labels.shape[1]),
            "auc": {name: float(np.nanmean(value)) for name, value in auc.items()},
            f"precision@{keep}": {name: float(value.mean()) for name, value in precision.items()},
            "auc_gain": paired_difference(auc["with_lm"], auc["without_lm"]),
            "precision_gain": paired_difference(precision["with_lm"], precision["without_lm"]),
        }
    info["lm_measurement"] = measured
    info["simulator"] = bench.simulator(training).training_info
    gain = measured["val"]["precision_gain"]
    return bool(gain["mean"] > 2 * gain["se"])
