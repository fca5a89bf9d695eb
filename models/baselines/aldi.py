"""ALDI: distil the warm backbone (teacher) into a content-based student for cold items.

Huang, Wang, Wang, Gao, Lian, Chen & Zhu, "Aligning Distillation For Cold-start Item
Recommendation", SIGIR 2023. The student has an item generator g (content -> embedding) and,
optionally (``map_users``), a user mapping f (teacher user embedding -> student space; the
identity without it). Per BPR triple (u, i+, j-), with teacher scores t = e_u . e_i and
student scores s = f(e_u) . g(c_i):

* supervised:      -ln sigma(s_ui - s_uj)
* rating (gamma):  |t_ui - s_ui| + |t_uj - s_uj|
* ranking (alpha): BCE(sigma(s_ui - s_uj), target sigma(t_ui - t_uj))
* identity (beta): BCE(sigma(g_i . g_i - mean_j g_i . g_j), target the same for e), where j runs
  over the batch's negatives: the item's relative place among others is preserved.

Optionally the distillation terms are weighted by the positive item's popularity
(``tanh(a * freq)`` capped at ``tanh(M)``): a teacher is more reliable on items it saw often.
With a user mapping, teacher and student spaces are joined by concatenation for export: users
[e_u || f(e_u)], warm items [e_i || 0], cold items [0 || g(c_i)], so one inner product
reproduces ALDI's scores. Without it, cold items simply get g(c_i) in the teacher's space.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.baselines.common import (
    ColdStartEmbeddings,
    choose_cold_scale,
    cold_item_ids,
)
from models.baselines.generator import (
    ContentMap,
    ContentMLP,
    GeneratorConfig,
    fit_with_early_stopping,
    standardization,
)
from models.data.dataset import ColdStartDataset
from models.evaluation import validation_ndcg
from models.sampling import NegativeSampler


@dataclass(frozen=True)
class AldiConfig:
    """ALDI's loss weights, frequency weighting and student user mapping.

    Defaults are the values CiteULike's cold validation NDCG@20 chose (docs/results.md); the
    ALDI paper's code uses alpha 0.9, beta 0.05, gamma 0.1 and a user mapping.
    """

    alpha: float = 0.1
    beta: float = 0.05
    gamma: float = 1.0
    frequency_weighting: bool = False
    frequency_cap: float = 4.0
    #: True is the paper's student user mapping f; False scores cold items with the teacher's
    #: user embeddings (one shared space).
    map_users: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def aldi_losses(
    teacher_user: torch.Tensor,
    teacher_pos: torch.Tensor,
    teacher_neg: torch.Tensor,
    student_user: torch.Tensor,
    student_pos: torch.Tensor,
    student_neg: torch.Tensor,
    weights: torch.Tensor | float = 1.0,
) -> dict[str, torch.Tensor]:
    """The four ALDI terms for one batch of triples (all inputs ``(batch, d)``).

    Shared with LLM-InS's collaborative subtower, whose L_dis and L_ide are the rating and
    identity terms here.
    """
    t_pos = (teacher_user * teacher_pos).sum(1)
    t_neg = (teacher_user * teacher_neg).sum(1)
    s_pos = (student_user * student_pos).sum(1)
    s_neg = (student_user * student_neg).sum(1)
    student_margin = s_pos - s_neg
    supervised = F.softplus(-student_margin).mean()
    rating = ((t_pos - s_pos).abs() + (t_neg - s_neg).abs()).mean()
    ranking = (
        weights
        * F.binary_cross_entropy_with_logits(
            student_margin, torch.sigmoid(t_pos - t_neg), reduction="none"
        )
    ).mean()
    teacher_identity = _identity(teacher_pos, teacher_neg)
    student_identity = _identity(student_pos, student_neg)
    identity = (
        weights
        * F.binary_cross_entropy_with_logits(
            student_identity, torch.sigmoid(teacher_identity), reduction="none"
        )
    ).mean()
    return {"supervised": supervised, "rating": rating, "ranking": ranking, "identity": identity}


def _identity(positives: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """g_i . g_i - mean_j g_i . g_j for each row i, with the mean taken over the negatives
    first (g_i . mean_j g_j): the same number without the (batch, batch) product, which was
    half of a training step's arithmetic."""
    return (positives * positives).sum(1) - positives @ negatives.mean(0)


def fit_aldi(
    dataset: ColdStartDataset,
    content: np.ndarray,
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    config: GeneratorConfig = GeneratorConfig(),
    aldi: AldiConfig = AldiConfig(),
    progress: bool = True,
    start: ContentMap | None = None,
) -> ColdStartEmbeddings:
    """Train ALDI's student on the warm training triples; early stopping on cold val NDCG@20.

    ``start`` (a generator fitted before, without a user mapping) is trained further instead
    of a new network: with its standardisation, so it reads content as it learnt to, and
    with itself scored as epoch 0, so that it comes back unchanged unless training beats it
    on the cold validation items (a refresh's refit against a retrained backbone).
    """
    if start is not None and aldi.map_users:
        raise ValueError("a start generator maps into the teacher's space: no user mapping")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    dim = item_embeddings.shape[1]
    if start is None:
        mean, std = standardization(content, dataset.warm_items)
        generator = ContentMLP(content.shape[1], dim, config.hidden, config.dropout)
    else:
        mean, std = start.mean, start.std
        generator = copy.deepcopy(start.network)
        # A saved map is rebuilt without its training dropout: train with ``config``'s.
        for module in generator.modules():
            if isinstance(module, nn.Dropout):
                module.p = config.dropout
    inputs = torch.from_numpy(((content - mean) / std).astype(np.float32))
    teacher_users = torch.from_numpy(user_embeddings)
    teacher_items = torch.from_numpy(item_embeddings)
    user_map = ContentMLP(dim, dim, config.hidden) if aldi.map_users else nn.Identity()
    student = nn.ModuleDict({"generator": generator, "user_map": user_map})
    train = dataset.splits["warm_train"]
    sampler = NegativeSampler(train, dataset.n_items)
    weights = _frequency_weights(train, dataset.n_items, aldi)
    cold = cold_item_ids(dataset)

    def tables() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            generated = generator(inputs[cold]).numpy()
            if not aldi.map_users:
                items = item_embeddings.copy()
                items[cold] = generated
                return user_embeddings, items
            mapped = user_map(teacher_users).numpy()
        users = np.concatenate([user_embeddings, mapped], axis=1)
        items = np.zeros((dataset.n_items, 2 * dim), dtype=np.float32)
        items[:, :dim] = item_embeddings
        items[cold] = 0.0
        items[cold, dim:] = generated
        return users, items

    def batch_loss(batch: np.ndarray) -> torch.Tensor:
        users, positives = train[batch, 0], train[batch, 1]
        negs = sampler.sample(users, rng)
        terms = aldi_losses(
            teacher_users[users],
            teacher_items[positives],
            teacher_items[negs],
            user_map(teacher_users[users]),
            generator(inputs[positives]),
            generator(inputs[negs]),
            weights[positives] if weights is not None else 1.0,
        )
        return (
            terms["supervised"]
            + aldi.alpha * terms["ranking"]
            + aldi.beta * terms["identity"]
            + aldi.gamma * terms["rating"]
        )

    training = fit_with_early_stopping(
        student,
        len(train),
        batch_loss,
        lambda: validation_ndcg(dataset, *tables(), "cold"),
        config,
        description="aldi",
        progress=progress,
        validate_start=start is not None,
    )
    users, items = tables()
    items, scale = choose_cold_scale(dataset, users, items)
    info = {**training, **scale, "generator": config.to_dict(), "aldi": aldi.to_dict()}
    # With mapped users a cold row is [0 | generated], which the map alone does not give.
    content_map = (
        None
        if aldi.map_users
        else ContentMap(mean.astype(np.float32), std.astype(np.float32), generator)
    )
    return ColdStartEmbeddings(users, items, info, content_map)


def _frequency_weights(train: np.ndarray, n_items: int, aldi: AldiConfig) -> torch.Tensor | None:
    """tanh(a * freq) capped at tanh(M), with a chosen so the mean frequency maps to M."""
    if not aldi.frequency_weighting:
        return None
    frequency = np.bincount(train[:, 1], minlength=n_items).astype(np.float32)
    expected = frequency[frequency > 0].mean()
    slope = aldi.frequency_cap / expected
    weights = np.minimum(np.tanh(slope * frequency), np.tanh(aldi.frequency_cap))
    return torch.from_numpy(weights.astype(np.float32))
