"""The language subtower: LM vectors of users and items through a two-tower (DSSM) model.

An item's input is its content vector (the mean of its tokens' LM states, E_llm); a user's
input is the mean content vector of the items in the user's history (their "text"). Two MLPs
map them into one space, trained with binary cross-entropy on interactions against random
non-interactions: y = sigma(E_Li . E_Lu). Early stopping watches the cold validation
NDCG@20 of the towers' own ranking, which is the filter's use of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F

from models.baselines.generator import (
    ContentMap,
    ContentMLP,
    GeneratorConfig,
    fit_with_early_stopping,
    standardize,
)
from models.data.dataset import ColdStartDataset
from models.evaluation import validation_ndcg
from models.llmins.history import UserHistories
from models.sampling import NegativeSampler


@dataclass(frozen=True)
class TowerConfig:
    """Width of the shared space and of the towers, and their training.

    ``negatives`` random non-interactions per interaction (the paper: balanced, 1).
    """

    dim: int = 64
    negatives: int = 1
    training: GeneratorConfig = GeneratorConfig(hidden=256, dropout=0.1, lr=1e-3, batch_size=2048)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LanguageTowers:
    """Trained towers' outputs: ``users`` ``(n_users, dim)`` and ``items`` ``(n_items, dim)``.

    ``item_map`` is the item tower itself, for items that arrive after training;
    ``user_map`` the user tower, for histories that change after it (its input:
    :func:`history_inputs`).
    """

    users: np.ndarray
    items: np.ndarray
    info: dict
    item_map: ContentMap
    user_map: ContentMap


def history_inputs(
    histories: UserHistories, content: np.ndarray, item_map: ContentMap
) -> np.ndarray:
    """What the user tower reads: per user, the mean of their items' content standardised
    as the item tower standardises it (zeros for an empty history)."""
    standardized = ((content - item_map.mean) / item_map.std).astype(np.float32)
    return histories.mean_vectors(standardized)


def fit_language_towers(
    dataset: ColdStartDataset,
    content: np.ndarray,
    histories: UserHistories,
    config: TowerConfig = TowerConfig(),
    progress: bool = True,
) -> LanguageTowers:
    """Train both towers on the warm training interactions of ``dataset``."""
    training = config.training
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    item_inputs = standardize(content, dataset.warm_items)
    user_inputs = torch.from_numpy(histories.mean_vectors(item_inputs.numpy()))
    item_tower = ContentMLP(item_inputs.shape[1], config.dim, training.hidden, training.dropout)
    user_tower = ContentMLP(user_inputs.shape[1], config.dim, training.hidden, training.dropout)
    towers = torch.nn.ModuleDict({"item_tower": item_tower, "user_tower": user_tower})
    train = dataset.splits["warm_train"]
    sampler = NegativeSampler(train, dataset.n_items)

    def batch_loss(batch: np.ndarray) -> torch.Tensor:
        users = np.tile(train[batch, 0], 1 + config.negatives)
        negatives = [sampler.sample(train[batch, 0], rng) for _ in range(config.negatives)]
        items = np.concatenate([train[batch, 1], *negatives])
        labels = torch.zeros(len(items))
        labels[: len(batch)] = 1.0
        logits = (user_tower(user_inputs[users]) * item_tower(item_inputs[items])).sum(1)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def tables() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            return user_tower(user_inputs).numpy(), item_tower(item_inputs).numpy()

    info = fit_with_early_stopping(
        towers,
        len(train),
        batch_loss,
        lambda: validation_ndcg(dataset, *tables(), "cold"),
        training,
        description="language towers",
        progress=progress,
    )
    users, items = tables()
    item_map = ContentMap.fitted_on(item_tower, content, dataset.warm_items)
    # Its inputs are standardised already (history_inputs): no second standardisation.
    dim = user_inputs.shape[1]
    user_map = ContentMap(np.zeros(dim, np.float32), np.ones(dim, np.float32), user_tower)
    return LanguageTowers(users, items, {**info, "config": config.to_dict()}, item_map, user_map)
