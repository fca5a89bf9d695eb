"""Updating: turn simulated interactions into cold-item embeddings.

Two ways, reported side by side:

* :func:`fit_item_vectors` (online, what the service does per item): the backbone's user
  vectors stay fixed and the item's vector solves a ridge regression that scores its
  simulated users 1 and every other user 0: ``v = (U^T U + lam I)^-1 sum_{u in S} u``. The
  matrix is shared by all items, so one item costs one matrix-vector product.
* :func:`retrain_backbone` (the paper's update): the backbone trains on warm ∪ simulated
  interactions with early stopping on overall validation NDCG@20. It starts from the trained
  backbone, the cold rows from the online vectors, rather than from scratch: the same
  optimum region in a fraction of the epochs. BPR does not learn how long cold rows must be
  to compete with warm ones in the overall task, so their length is chosen on validation
  afterwards, as for every other method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from models.backbones import BackboneConfig, build_backbone
from models.backbones.base import Backbone
from models.baselines.common import choose_cold_scale, cold_item_ids
from models.data.dataset import ColdStartDataset
from models.evaluation import validation_ndcg
from models.training import TrainConfig, TrainResult, train_bpr

#: Ridge strengths tried, as multiples of the mean eigenvalue of U^T U.
RIDGE_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


def ridge_inverse(users: np.ndarray, ridge: float) -> np.ndarray:
    """``(U^T U + ridge * mean_eig * I)^-1`` for user vectors ``U`` (float64)."""
    gram = users.astype(np.float64).T @ users.astype(np.float64)
    strength = ridge * np.trace(gram) / len(gram)
    return np.linalg.inv(gram + strength * np.eye(len(gram)))


def fit_item_vectors(
    users: np.ndarray,
    simulated: np.ndarray,
    items: np.ndarray,
    inverse: np.ndarray,
    targets: np.ndarray | None = None,
) -> np.ndarray:
    """``(len(items), d)`` vectors of ``items`` from ``(n, 2)`` simulated (user, item) pairs.

    Each pair's user is scored ``targets`` (one per pair; None: 1) and every other user 0.
    An item with no simulated users gets the zero vector.
    """
    return (simulated_user_sums(users, simulated, items, targets) @ inverse).astype(np.float32)


def simulated_user_sums(
    users: np.ndarray,
    simulated: np.ndarray,
    items: np.ndarray,
    targets: np.ndarray | None = None,
) -> np.ndarray:
    """Per item of ``items``, the sum of its simulated users' vectors, each scaled by its
    target (float64): the right-hand side of :func:`fit_item_vectors`, the same for every
    ridge, so a choice among ridges sums once."""
    position = {int(item): row for row, item in enumerate(items)}
    sums = np.zeros((len(items), users.shape[1]), dtype=np.float64)
    rows = np.array([position.get(int(i), -1) for i in simulated[:, 1]], dtype=np.int64)
    keep = rows >= 0
    vectors = users[simulated[keep, 0]].astype(np.float64)
    if targets is not None:
        vectors *= np.asarray(targets, dtype=np.float64)[keep, None]
    np.add.at(sums, rows[keep], vectors)
    return sums


def fold_in(seen: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """A user vector from the ``(n, d)`` vectors of the items they interacted with, the
    item vectors fixed: the ridge regression that scores those items 1 and every other
    item 0, :func:`fit_item_vectors` with the sides swapped (``inverse``:
    :func:`ridge_inverse` of the item table). For a user the backbone was not trained
    with, served at once instead of waiting for the next training.
    """
    return (np.asarray(seen, dtype=np.float64).sum(axis=0) @ inverse).astype(np.float32)


def choose_fold_in_ridge(
    dataset: ColdStartDataset, items: np.ndarray, ridges: Sequence[float] = RIDGE_GRID
) -> tuple[float, dict[str, float]]:
    """The ridge of :func:`fold_in`, chosen on validation: every user folded in from their
    training interactions (their trained vectors unused), scored by warm validation
    NDCG@20. Returns the ridge and each one's score."""
    pairs = dataset.splits["warm_train"]
    table = np.asarray(items, dtype=np.float64)
    sums = np.zeros((dataset.n_users, table.shape[1]), dtype=np.float64)
    np.add.at(sums, pairs[:, 0], table[pairs[:, 1]])
    scores = {
        str(ridge): validation_ndcg(
            dataset, (sums @ ridge_inverse(table, ridge)).astype(np.float32), items, "warm"
        )
        for ridge in ridges
    }
    return max(ridges, key=lambda ridge: scores[str(ridge)]), scores


#: What a kept user is scored in the ridge fit: ``uniform`` scores every kept user 1;
#: ``confidence`` scores each the refiner's probability that they interact (calibrated on
#: validation labels), so an item's vector leans towards the users the evidence is surest
#: of, and a kept count past the sure ones costs less.
TARGETS: tuple[str, ...] = ("uniform", "confidence")

#: Weights tried for the content prior in the blend with the fitted vector.
BLEND_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

#: Content maps that compete as the prior: the text-to-users items head, and a DeepMusic
#: regression of the backbone's item vectors on the frozen content vectors. Which maps a
#: data set's items best depends on the backbone (the regression suits LightGCN's smoothed
#: item vectors better on ML-100K), so validation picks.
PRIORS: tuple[str, ...] = ("text2users", "deepmusic")


@dataclass(frozen=True)
class Blend:
    """A cold row as ``(1 - weight) * fitted / fitted_norm + weight * prior / prior_norm``.

    The fitted vector (from the simulated users) and the prior (the item's content mapped
    into the backbone's space by the content map ``source``, one of :data:`PRIORS`) are
    put on one scale by their mean norms over the cold items before mixing, so ``weight``
    means the same on any data set. Weight 0 is the fitted vector alone.
    """

    weight: float = 0.0
    fitted_norm: float = 1.0
    prior_norm: float = 1.0
    source: str = PRIORS[0]

    def apply(self, fitted: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
        if self.weight == 0.0 or prior is None:
            return fitted
        mixed = (1.0 - self.weight) * fitted / max(self.fitted_norm, 1e-12)
        return (mixed + self.weight * prior / max(self.prior_norm, 1e-12)).astype(np.float32)


def kept_pairs(simulated: np.ndarray, ranks: np.ndarray | None, keep: int | None) -> np.ndarray:
    """The pairs ranked among their item's best ``keep`` (all pairs for None)."""
    return simulated[kept_mask(ranks, keep, len(simulated))]


def kept_mask(ranks: np.ndarray | None, keep: int | None, n_pairs: int) -> np.ndarray:
    """Which of ``n_pairs`` pairs rank among their item's best ``keep`` (all for None)."""
    if keep is None or ranks is None:
        return np.ones(n_pairs, dtype=bool)
    return ranks < keep


def online_update(
    dataset: ColdStartDataset,
    users: np.ndarray,
    items: np.ndarray,
    simulated: np.ndarray,
    ridges: Sequence[float] = RIDGE_GRID,
    ranks: np.ndarray | None = None,
    keeps: Sequence[int] = (),
    priors: Mapping[str, np.ndarray] | None = None,
    blends: Sequence[float] = BLEND_GRID,
    confidences: np.ndarray | None = None,
    targets: Sequence[str] = TARGETS,
) -> tuple[np.ndarray, dict]:
    """Cold rows fitted to their simulated users; every choice made on validation.

    Chosen on the cold validation NDCG@20: the number of simulated users kept per item
    (with ``ranks``, each pair's rank in its item's list, and ``keeps`` to try; else every
    pair counts), what each kept user is scored (one of ``targets``, :data:`TARGETS`;
    ``confidence`` needs ``confidences``, each pair's probability), the ridge, then the
    blend with one of ``priors`` (per content map,
    ``(n_items, d)`` content-side vectors in the backbone's space; none: no blend), and
    last the rows' length on the overall validation NDCG@20. Returns the table and what
    was chosen and measured.
    """
    cold = cold_item_ids(dataset)
    inverses = {ridge: ridge_inverse(users, ridge) for ridge in ridges}

    def cold_ndcg(cold_rows: np.ndarray) -> float:
        table = items.copy()
        table[cold] = cold_rows
        return validation_ndcg(dataset, users, table, "cold")

    if confidences is None:
        targets = [target for target in targets if target != "confidence"] or ["uniform"]
    scores: dict[str, float] = {}
    best: tuple[float, int | None, str, float, np.ndarray] | None = None
    for keep in keeps or (None,):
        mask = kept_mask(ranks, keep, len(simulated))
        for target in targets:
            scored = confidences[mask] if target == "confidence" else None
            sums = simulated_user_sums(users, simulated[mask], cold, scored)
            for ridge in ridges:
                fitted = (sums @ inverses[ridge]).astype(np.float32)
                score = cold_ndcg(fitted)
                scores[f"keep={keep},target={target},ridge={ridge}"] = score
                if best is None or score > best[0]:
                    best = (score, keep, target, ridge, fitted)
    _, keep, target, ridge, fitted = best
    blend, blend_scores = Blend(), {}
    priors = priors or {}
    fitted_norm = float(np.linalg.norm(fitted, axis=1).mean())
    best_score = -1.0
    for source, prior in priors.items():
        prior_norm = float(np.linalg.norm(prior[cold], axis=1).mean())
        by_weight = blend_scores[source] = {}
        for weight in blends:
            candidate = Blend(weight, fitted_norm, prior_norm, source)
            by_weight[str(weight)] = cold_ndcg(candidate.apply(fitted, prior[cold]))
            if by_weight[str(weight)] > best_score:
                blend, best_score = candidate, by_weight[str(weight)]
    table = items.copy()
    table[cold] = blend.apply(fitted, priors[blend.source][cold] if priors else None)
    table, scale = choose_cold_scale(dataset, users, table)
    info = {
        "keep": keep,
        "target": target,
        "ridge": ridge,
        "blend": asdict(blend),
        "val_cold_ndcg_by_keep_target_and_ridge": scores,
        "val_cold_ndcg_by_blend": blend_scores,
        **scale,
    }
    return table, info


def retrain_backbone(
    dataset: ColdStartDataset,
    name: str,
    trained: Backbone,
    simulated: np.ndarray,
    cold_init: np.ndarray,
    backbone_config: BackboneConfig,
    train_config: TrainConfig,
    progress: bool = True,
) -> tuple[Backbone, TrainResult]:
    """The backbone trained on warm ∪ simulated pairs, from ``trained``'s parameters.

    ``cold_init`` are the cold items' starting vectors (rows of all items; only cold rows are
    read: the online update's, length included). The starting point is validated too, so
    the update keeps it unless training beats it. Negatives come from every item, cold ones
    included, so cold items also learn whom they do not suit.
    """
    pairs = np.concatenate([dataset.splits["warm_train"], simulated]).astype(np.int64)
    model = build_backbone(name, dataset.n_users, dataset.n_items, pairs, backbone_config)
    state = {
        key: value
        for key, value in trained.state_dict().items()
        if key in ("user_embedding.weight", "item_embedding.weight")
    }
    model.load_state_dict(state, strict=False)
    cold = cold_item_ids(dataset)
    with torch.no_grad():
        ego = model.item_embedding.weight
        ego[torch.from_numpy(cold)] = torch.from_numpy(cold_init[cold]).to(ego.dtype)

    def overall(model: Backbone) -> float:
        return validation_ndcg(dataset, *model.export_embeddings(), "overall")

    result = train_bpr(
        model,
        pairs,
        overall,
        train_config,
        item_pool=np.arange(dataset.n_items),
        progress=progress,
        description=f"update {name}",
        validate_start=True,
    )
    return model, result
