"""LLM-InS end to end on a data set: filter, refine, simulate, update.

:func:`simulate` runs one variant (an :class:`~models.llmins.variants.LLMInSConfig`) on a
:class:`~models.llmins.workbench.Workbench` and returns the simulated interactions with the
measurements the report shows; :func:`warm_up` adds the update.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from models.baselines.common import ColdStartEmbeddings, choose_cold_scale
from models.evaluation import validation_ndcg
from models.llmins.filtering import (
    merge,
    top_users,
)
from models.llmins.lm_gain import measure_lm_gain
from models.llmins.refine import (
    Refiner,
    candidate_features,
    feature_names,
    fit_refiner,
    per_item_auc,
    probability,
    select,
)
from models.llmins.update import kept_pairs, online_update, retrain_backbone
from models.llmins.variants import LLMInSConfig
from models.llmins.workbench import STAGES, Workbench
from models.runs import Backbone

#: Candidate precision is also reported among each list's first this many users, as the
#: paper reports it, so lists of any length compare.
PRECISION_DEPTH = 100

logger = logging.getLogger(__name__)


@dataclass
class Simulation:
    """Simulated (user, item) pairs of every cold item, and what was measured on the way."""

    pairs: np.ndarray
    info: dict = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    refiner: Refiner | None = None
    #: When the simulator was used: the refiner without it, which picks what it scores.
    screen: Refiner | None = None
    #: Per pair, its rank in its item's kept list (0: best): the update keeps a prefix.
    ranks: np.ndarray | None = None
    #: Per pair, the refiner's probability that the user interacts (None: no refiner).
    confidences: np.ndarray | None = None


def simulate(bench: Workbench, config: LLMInSConfig) -> Simulation:
    """Simulated interactions of every cold item (validation and test) for one variant."""
    rng = np.random.default_rng(bench.seed)
    info: dict = {"config": config.to_dict()}
    weights: dict[str, float] = {}
    if config.candidates == "filter":
        weights, tried = bench.weights(
            config.signals, config.keep or config.k_filter, config.text_encoder
        )
        info["filter_weights"] = weights
        info["filter_weights_tried"] = tried
        if "collaborative" in config.signals:
            chosen = bench.collaborative.info
            info["collaborative_subtower"] = {"chosen": chosen["generator"], "grid": chosen["grid"]}
    lists: dict[str, dict] = {}
    for stage in STAGES:
        items = bench.stage_items(stage)
        signals = bench.signals(stage, config.signals, config.text_encoder)
        if config.candidates == "random":
            candidates = np.stack(
                [rng.choice(bench.dataset.n_users, config.k_filter, replace=False) for _ in items]
            )
            merged = np.zeros((len(items), bench.dataset.n_users), dtype=np.float32)
        else:
            merged = merge(signals, weights)
            candidates = top_users(merged, config.k_filter)
        features = candidate_features(
            signals, config.signals, merged, candidates, np.log1p(bench.histories.lengths())
        )
        truth = bench.truth(stage)
        labels = np.array([[u in truth[r] for u in candidates[r]] for r in range(len(items))])
        lists[stage] = {
            "items": items,
            "candidates": candidates,
            "features": features,
            "labels": labels.astype(np.int8),
        }
    names = feature_names(config.signals)
    for stage in STAGES:
        labels = lists[stage]["labels"]
        info[f"{stage}_candidate_precision"] = float(labels.mean())
        if labels.shape[1] >= PRECISION_DEPTH:
            # The paper's yardstick, comparable whatever the list's length.
            info[f"{stage}_candidate_precision@{PRECISION_DEPTH}"] = float(
                labels[:, :PRECISION_DEPTH].mean()
            )
    kept, refiner, screen = _refine(bench, config, lists, names, info)
    # A count past the lists' length (the LM's cascade shortens them) keeps them whole.
    width = min(data["candidates"].shape[1] for data in lists.values())
    info["keep_choices"] = sorted({min(keep, width) for keep in config.keep_choices})
    pairs, ranks, confidences = [], [], []
    for stage in STAGES:
        mask, data = kept[stage], lists[stage]
        # Rank of each kept candidate among its item's kept ones, by the refiner's score
        # (the filter's order without a refiner).
        order_scores = data.get("scores", -np.arange(mask.shape[1], dtype=np.float64)[None, :])
        ranked = np.where(mask, np.broadcast_to(order_scores, mask.shape), -np.inf)
        rank = np.argsort(np.argsort(-ranked, axis=1, kind="stable"), axis=1, kind="stable")
        rows, columns = np.nonzero(mask)
        pairs.append(np.stack([data["candidates"][rows, columns], data["items"][rows]], axis=1))
        ranks.append(rank[rows, columns])
        if "scores" in data:
            confidences.append(probability(data["scores"][rows, columns]))
        for keep in info["keep_choices"] or (None,):
            chosen = mask if keep is None else mask & (rank < keep)
            selected = data["labels"][chosen]
            suffix = "" if keep is None else f"@{keep}"
            info[f"{stage}_precision{suffix}"] = float(selected.mean()) if selected.size else 0.0
            info[f"{stage}_adoption{suffix}"] = float(chosen.mean())
            info[f"{stage}_pairs_per_item{suffix}"] = float(chosen.sum(1).mean())
    return Simulation(
        np.concatenate(pairs).astype(np.int64),
        info,
        weights,
        refiner,
        screen,
        ranks=np.concatenate(ranks).astype(np.int64),
        confidences=np.concatenate(confidences) if len(confidences) == len(STAGES) else None,
    )


def _refine(
    bench: Workbench,
    config: LLMInSConfig,
    lists: dict[str, dict],
    names: list[str],
    info: dict,
) -> tuple[dict[str, np.ndarray], Refiner | None, Refiner | None]:
    """Kept-candidate masks per stage, the refiner that chose them (None: no refiner) and,
    when the simulator was used, the refiner without it that chose what it scored.

    The refiner's measurements are added to ``info``.
    """
    if not config.refine:
        # The filter's own order: its first ``most_kept`` candidates.
        masks = {
            stage: np.arange(config.k_filter)[None, :].repeat(len(data["items"]), 0)
            < (config.most_kept or config.k_filter)
            for stage, data in lists.items()
        }
        return masks, None, None
    if config.lm == "paper":
        return _paper_refine(bench, config, lists, info), None, None
    refiner = _cross_fitted(lists, names, info, "refiner (no LM)")
    use_lm = config.lm == "always"
    if config.lm in ("auto", "always"):
        use_lm = measure_lm_gain(bench, config, lists, names, refiner, info) or use_lm
    info["lm_used"] = use_lm
    screen = None
    if use_lm:
        screen = refiner
        # A cascade: the simulator scores each list's best lm_candidates by the refiner
        # without it (its cost is per prompt), and the refiner with it re-ranks those.
        training = config.simulator_training
        for stage, data in lists.items():
            order = np.argsort(-data["scores"], axis=1, kind="stable")[:, : config.lm_candidates]
            for key in ("candidates", "labels"):
                data[key] = np.take_along_axis(data[key], order, axis=1)
            data["features"] = np.take_along_axis(data["features"], order[..., None], axis=1)
            logits = bench.lm_logits(
                training, stage, np.arange(len(data["items"])), data["candidates"]
            )
            data["features"] = np.concatenate([data["features"], logits[..., None]], axis=-1)
        names = [*names, "lm"]
        refiner = _cross_fitted(lists, names, info, "refiner (with LM)")
    scores = {stage: data["scores"] for stage, data in lists.items()}
    for stage, data in lists.items():
        info[f"{stage}_refiner_auc"] = float(
            np.nanmean(per_item_auc(scores[stage], data["labels"]))
        )
        merged = data["features"][..., len(config.signals) + 1]
        info[f"{stage}_filter_auc"] = float(np.nanmean(per_item_auc(merged, data["labels"])))
    info["refiner_weights"] = refiner.describe()
    masks = {stage: select(scores[stage], config.most_kept, config.threshold) for stage in lists}
    return masks, refiner, screen


def _cross_fitted(lists: dict[str, dict], names: list[str], info: dict, label: str) -> Refiner:
    """Fit the refiner on validation lists; score validation out of fold, test with all.

    Validation items' kept users feed the update's early stopping, so each half of them is
    scored by a refiner fitted on the other half: no label chooses its own item's users.
    """
    val = lists["val"]
    halves = np.arange(len(val["items"])) % 2
    val["scores"] = np.zeros(val["labels"].shape, dtype=np.float64)
    for half in (0, 1):
        fit = halves != half
        refiner = fit_refiner(val["features"][fit], val["labels"][fit], names)
        val["scores"][halves == half] = refiner.logits(val["features"][halves == half])
    refiner = fit_refiner(val["features"], val["labels"], names)
    lists["test"]["scores"] = refiner.logits(lists["test"]["features"])
    info[f"{label} weights"] = refiner.describe()
    return refiner


def _paper_refine(
    bench: Workbench, config: LLMInSConfig, lists: dict[str, dict], info: dict
) -> dict[str, np.ndarray]:
    """The paper's refining: every candidate the simulator answers Yes for is kept."""
    training = config.simulator_training
    kept = {}
    for stage, data in lists.items():
        logits = bench.lm_logits(training, stage, np.arange(len(data["items"])), data["candidates"])
        kept[stage] = select(logits.astype(np.float64), config.keep, config.threshold)
        info[f"{stage}_simulator_auc"] = float(np.nanmean(per_item_auc(logits, data["labels"])))
    info["simulator"] = bench.simulator(training).training_info
    return kept


def update_online(
    bench: Workbench, config: LLMInSConfig, simulation: Simulation
) -> tuple[np.ndarray, dict, np.ndarray]:
    """The online update of a simulation: item table, record, and the pairs it kept.

    Validation chooses how many of each item's ranked users to keep (``config.keeps``), what
    each kept user is scored (``config.targets``), the ridge, the prior and its blend weight
    and the rows' length; the record's precision, adoption and pairs per item are those of
    the chosen count.
    """
    table, update_info = online_update(
        bench.dataset,
        bench.users,
        bench.items,
        simulation.pairs,
        ranks=simulation.ranks,
        keeps=simulation.info["keep_choices"],
        priors=bench.priors(config),
        confidences=simulation.confidences,
        targets=config.targets,
    )
    info = {**simulation.info, "online_update": update_info}
    if config.uses_text_to_users:
        # The encoder's training record: its loss and validation curve, best epoch, time.
        info["text_to_users"] = bench.text_to_users(config.text_encoder)[0].info
    keep = update_info["keep"]
    if keep is not None:
        for stage in STAGES:
            for measure in ("precision", "adoption", "pairs_per_item"):
                info[f"{stage}_{measure}"] = info[f"{stage}_{measure}@{keep}"]
    return table, info, kept_pairs(simulation.pairs, simulation.ranks, keep)


def warm_up(
    bench: Workbench, config: LLMInSConfig, backbone: Backbone | None
) -> ColdStartEmbeddings:
    """Simulate interactions for every cold item, then update: embeddings for evaluation.

    ``backbone`` is needed by the full update only (None suits ``update="online"``).
    """
    before = dict(bench.seconds)
    started = time.perf_counter()
    simulation = simulate(bench, config)
    simulate_seconds = time.perf_counter() - started
    dataset = bench.dataset
    started = time.perf_counter()
    online, info, pairs = update_online(bench, config, simulation)
    seconds = {"simulate": simulate_seconds, "online update": time.perf_counter() - started}
    users, items = bench.users, online
    if config.update == "full":
        if backbone is None:
            raise ValueError("the full update retrains a backbone: pass the trained one")
        started = time.perf_counter()
        model, result = retrain_backbone(
            dataset,
            backbone.name,
            backbone.model,
            pairs,
            online,
            backbone.config,
            replace(
                backbone.train_config,
                seed=bench.seed,
                lr=backbone.train_config.lr * config.update_lr_factor,
            ),
            bench.progress,
        )
        retrained = model.export_embeddings()
        retrained_items, scale = choose_cold_scale(dataset, *retrained)
        # The retraining starts from the online rows, but a propagating backbone
        # (LightGCN) serves its items through the new graph, so its starting point is not
        # the online table: keep whichever serves validation better.
        scores = {
            "online": validation_ndcg(dataset, users, items, "overall"),
            "full": validation_ndcg(dataset, retrained[0], retrained_items, "overall"),
        }
        kept = "full" if scores["full"] >= scores["online"] else "online"
        if kept == "full":
            users, items = retrained[0], retrained_items
        info["full_update_scale"] = scale
        seconds["full update"] = time.perf_counter() - started
        info["full_update"] = {
            "best_epoch": result.best_epoch,
            "best_val_overall_ndcg@20": result.best_score,
            "epochs_run": result.epochs_run,
            "val_overall_ndcg@20": scores,
            "kept": kept,
        }
    # Shared pieces this variant built first (subtowers, simulator) count towards it.
    built = {k: v - before.get(k, 0.0) for k, v in bench.seconds.items()}
    info["seconds"] = {**{k: v for k, v in built.items() if v > 0}, **seconds}
    info["simulated_pairs"] = int(len(pairs))
    return ColdStartEmbeddings(users, items, info)
