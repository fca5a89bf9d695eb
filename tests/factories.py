"""Test factories in one place: small data sets, content vectors and trained backbones."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from models.backbones import BackboneConfig, build_backbone
from models.data.dataset import ColdStartDataset
from models.data.synthetic import TOPIC_WORDS, make_synthetic
from models.training import TrainConfig, train_bpr, warm_validator


@cache
def planted_dataset(seed: int = 1) -> ColdStartDataset:
    """150 users, 200 items in 8 topics: sharp enough preferences for a test to assert on."""
    return make_synthetic(n_users=150, n_items=200, n_topics=8, interactions_per_user=30, seed=seed)


def bag_of_words(texts) -> np.ndarray:
    """Word counts over the synthetic vocabulary: content vectors with no model to load."""
    vocabulary = {word: i for i, word in enumerate(w for topic in TOPIC_WORDS for w in topic)}
    vectors = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            vectors[row, vocabulary[word]] += 1.0
    return vectors


@cache
def trained_mf(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings of an MF trained on :func:`planted_dataset`."""
    data = planted_dataset(seed)
    torch.manual_seed(0)
    model = build_backbone(
        "mf", data.n_users, data.n_items, data.splits["warm_train"], BackboneConfig(dim=32)
    )

    train_bpr(
        model,
        data.splits["warm_train"],
        warm_validator(data),
        TrainConfig(lr=1e-2, batch_size=256, max_epochs=40, eval_every=2, patience=5),
        progress=False,
    )
    return model.export_embeddings()


def small_workbench(**options):
    """A LLM-InS workbench on :func:`planted_dataset` with small, fast subtowers."""
    from models.baselines.generator import GeneratorConfig
    from models.llmins.pipeline import Workbench
    from models.llmins.towers import TowerConfig

    data = planted_dataset()
    users, items = trained_mf()
    small = GeneratorConfig(hidden=32, batch_size=128, max_epochs=15, patience=3)
    return Workbench(
        data,
        bag_of_words(data.item_texts),
        users,
        items,
        towers=TowerConfig(dim=16, training=small),
        collaborative=small,
        progress=False,
        **options,
    )


def free_port() -> int:
    """A TCP port nobody listens on now, for a server a test starts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process) -> None:
    """Stop a server a test started: politely, then for sure."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
