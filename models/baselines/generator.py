"""What the embedding-simulation baselines share: a content MLP and its training loop.

DeepMusic, ALDI and LLM-InS's collaborative subtower all map an item's content vector to a
behavioural embedding with the same kind of network and fit it against the backbone's warm
embeddings; only their losses differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.early_stopping import EarlyStopping

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of a content-to-embedding generator and its training.

    Attributes:
        hidden: width of the hidden layer (ALDI and ColdRec use 200).
        dropout: dropout on the content input while training.
        lr: Adam learning rate.
        weight_decay: L2 on the network's weights.
        batch_size: examples per step.
        max_epochs: cap on epochs; early stopping usually ends sooner.
        patience: epochs without a better validation score before stopping.
        seed: seeds initialisation and batching.
    """

    hidden: int = 200
    dropout: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024
    max_epochs: int = 100
    patience: int = 5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class ContentMLP(nn.Module):
    """content (standardised) -> [dropout] -> Linear -> BatchNorm -> tanh -> Linear -> embedding.

    Input dropout (off by default) keeps the generator from memorising the warm items it
    trains on, which is what cold items, never seen, need.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.Tanh(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


def standardize(content: np.ndarray, reference_items: np.ndarray) -> torch.Tensor:
    """Content z-scored with the statistics of ``reference_items`` (the warm items)."""
    mean, std = standardization(content, reference_items)
    return torch.from_numpy(((content - mean) / std).astype(np.float32))


def standardization(content: np.ndarray, reference_items: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, std) of the reference items' content, kept to standardise new items alike."""
    reference = content[reference_items]
    return reference.mean(0), reference.std(0) + 1e-6


@dataclass
class ContentMap:
    """A trained content -> vector network with the standardisation it was trained with.

    What the online service needs to embed an item that did not exist at training time:
    ``content`` in, one vector per row out, exactly as the network saw warm items.
    """

    mean: np.ndarray
    std: np.ndarray
    network: nn.Module

    @classmethod
    def fitted_on(
        cls, network: nn.Module, content: np.ndarray, reference_items: np.ndarray
    ) -> ContentMap:
        mean, std = standardization(content, reference_items)
        return cls(mean.astype(np.float32), std.astype(np.float32), network)

    def state(self) -> dict:
        """Plain tensors and arrays, for ``torch.save`` (no pickled classes)."""
        return {"mean": self.mean, "std": self.std, "network": self.network.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> ContentMap:
        """Rebuild a :class:`ContentMLP` map; its sizes are read off the saved weights."""
        weights = state["network"]
        hidden, in_dim = weights["net.1.weight"].shape
        out_dim = weights["net.4.weight"].shape[0]
        network = ContentMLP(in_dim, out_dim, hidden)
        network.load_state_dict(weights)
        return cls(np.asarray(state["mean"]), np.asarray(state["std"]), network)

    @torch.inference_mode()
    def __call__(self, content: np.ndarray) -> np.ndarray:
        self.network.eval()
        inputs = torch.from_numpy(((content - self.mean) / self.std).astype(np.float32))
        return self.network(inputs).numpy()


def rescale_to_norm(embeddings: np.ndarray, target_norm: float) -> np.ndarray:
    """Each row scaled to ``target_norm``.

    In the overall task cold and warm items compete on raw inner products; a regression
    onto warm embeddings shrinks towards their mean, so generated vectors come out shorter
    than real ones and lose however good their direction is.
    """
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12) * target_norm).astype(np.float32)


#: One optimisation step's loss for a batch of indices into the training examples.
BatchLoss = Callable[[np.ndarray], torch.Tensor]


def fit_with_early_stopping(
    modules: nn.Module,
    n_examples: int,
    batch_loss: BatchLoss,
    validate: Callable[[], float],
    config: GeneratorConfig,
    description: str,
    progress: bool = True,
    validate_start: bool = False,
) -> dict[str, float]:
    """Adam over shuffled mini-batches; restore the parameters of the best validation epoch.

    ``validate_start`` scores the starting parameters as epoch 0, so that a network trained
    further (a refit from an earlier fit) is kept as it was unless training beats it.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(
        modules.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    stopping = EarlyStopping(modules, config.patience)
    start = None
    if validate_start:
        modules.eval()
        with torch.no_grad():
            start = validate()
        stopping.update(start, 0)
    bar = tqdm(range(1, config.max_epochs + 1), desc=description, disable=not progress)
    epoch = 0
    for epoch in bar:
        modules.train()
        for batch in _batches(rng.permutation(n_examples), config.batch_size):
            loss = batch_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        modules.eval()
        with torch.no_grad():
            score = validate()
        stopping.update(score, epoch)
        bar.set_postfix(val=f"{score:.4f}", best=stopping.best_epoch)
        logger.info("%s epoch %d val %.4f", description, epoch, score)
        if stopping.should_stop:
            break
    stopping.restore_best()
    return {
        "best_epoch": stopping.best_epoch,
        "best_val": stopping.best_score,
        **({"start_val": start} if start is not None else {}),
        "epochs_run": epoch,
        "seconds": time.perf_counter() - started,
    }


def _batches(order: np.ndarray, size: int) -> Iterator[np.ndarray]:
    # A last batch of one would break BatchNorm; fold it into the previous one.
    for start in range(0, len(order), size):
        batch = order[start : start + size]
        if len(batch) > 1:
            yield batch
