"""The training loop for every backbone: BPR batches, Adam, early stopping on validation NDCG.

The loop lives outside the models (as RecBole's trainer does), so MF, LightGCN and NGCF,
and later the updating stage on real plus simulated interactions, share it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from models.backbones.base import Backbone, BackboneConfig
from models.data.dataset import ColdStartDataset
from models.early_stopping import EarlyStopping
from models.evaluation import validation_ndcg
from models.sampling import NegativeSampler

logger = logging.getLogger(__name__)

#: Called with the model after an epoch; returns the validation score to maximise.
Validator = Callable[[Backbone], float]


def warm_validator(dataset: ColdStartDataset) -> Validator:
    """Warm validation NDCG@20 of a backbone: what backbone training stops early on."""

    def validate(model: Backbone) -> float:
        return validation_ndcg(dataset, *model.export_embeddings(), "warm")

    return validate


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the paper's updating stage: Adam, lr 1e-3, early stopping).

    Attributes:
        lr: Adam learning rate.
        batch_size: BPR triples per step.
        max_epochs: hard cap on epochs.
        eval_every: validate every this many epochs.
        patience: stop after this many validations without improvement.
        seed: seeds torch and the negative sampler.
    """

    lr: float = 1e-3
    batch_size: int = 2048
    max_epochs: int = 300
    eval_every: int = 5
    patience: int = 4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


#: Per-backbone settings chosen on CiteULike's warm *validation* NDCG@20 (sweeps and their
#: commands: docs/results.md). Other data sets start from these.
TUNED: dict[str, tuple[BackboneConfig, TrainConfig]] = {
    "mf": (BackboneConfig(reg=5e-3), TrainConfig(lr=3e-3)),
    "lightgcn": (BackboneConfig(reg=1e-5), TrainConfig(lr=5e-3, batch_size=8192)),
    "ngcf": (BackboneConfig(reg=1e-3), TrainConfig(lr=5e-3, batch_size=8192)),
}


def tuned_configs(backbone: str) -> tuple[BackboneConfig, TrainConfig]:
    """The tuned (model, training) settings of ``backbone``."""
    if backbone not in TUNED:
        raise ValueError(f"unknown backbone {backbone!r}; known: {', '.join(TUNED)}")
    return TUNED[backbone]


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train_bpr(
    model: Backbone,
    train_pairs: np.ndarray,
    validate: Validator | None,
    config: TrainConfig,
    item_pool: np.ndarray | None = None,
    progress: bool = True,
    description: str = "train",
    validate_start: bool = False,
) -> TrainResult:
    """Train ``model`` with BPR on ``train_pairs``; keep the weights of the best validation.

    Args:
        model: any :class:`Backbone`; trained in place and left at its best state.
        train_pairs: ``(n, 2)`` (user, item) interactions.
        validate: returns the score to maximise (e.g. warm or overall validation NDCG@20);
            None trains ``max_epochs`` epochs and keeps the last (nothing to choose with).
        item_pool: items negatives are drawn from (default: items in ``train_pairs``).
        validate_start: also validate the starting parameters (epoch 0), so a model that
            starts from a good state is never left worse than it started.
    """
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    sampler = NegativeSampler(train_pairs, model.n_items, item_pool)
    # Training runs where the model's parameters are (CPU here, a GPU where one is given).
    device = model.user_embedding.weight.device
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    stopping = EarlyStopping(model, config.patience)
    history: list[dict[str, float]] = []
    epoch = 0
    if validate_start and validate is not None:
        model.eval()
        stopping.update(validate(model), 0)
        history.append({"epoch": 0, "val": stopping.best_score})
    bar = tqdm(range(1, config.max_epochs + 1), desc=description, disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train_pairs))
        users_all = train_pairs[order, 0]
        positives_all = train_pairs[order, 1]
        negatives_all = sampler.sample(users_all, rng)
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = slice(start, start + config.batch_size)
            loss = model.calculate_loss(
                torch.from_numpy(users_all[batch]).to(device),
                torch.from_numpy(positives_all[batch]).to(device),
                torch.from_numpy(negatives_all[batch]).to(device),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(users_all[batch])
        record = {"epoch": epoch, "loss": total / len(order)}
        if validate is not None and (epoch % config.eval_every == 0 or epoch == config.max_epochs):
            model.eval()
            score = validate(model)
            record["val"] = score
            stopping.update(score, epoch)
            bar.set_postfix(
                loss=f"{record['loss']:.4f}", val=f"{score:.4f}", best=stopping.best_epoch
            )
            logger.info("%s epoch %d loss %.4f val %.4f", description, epoch, record["loss"], score)
        history.append(record)
        if stopping.should_stop:
            break
    if validate is None:
        stopping.best_epoch = epoch
    else:
        stopping.restore_best()
    return TrainResult(
        best_epoch=stopping.best_epoch,
        best_score=stopping.best_score,
        epochs_run=epoch,
        seconds=time.perf_counter() - started,
        history=history,
    )
