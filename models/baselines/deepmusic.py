"""DeepMusic: regress the backbone's item embedding from content with a mean-squared error.

van den Oord, Dieleman & Schrauwen, "Deep content-based music recommendation", NeurIPS 2013.
Warm items keep the backbone's embeddings; cold items get the regression's output.
"""

from __future__ import annotations

import numpy as np
import torch

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
    standardize,
)
from models.data.dataset import ColdStartDataset
from models.evaluation import validation_ndcg


def fit_deepmusic(
    dataset: ColdStartDataset,
    content: np.ndarray,
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    config: GeneratorConfig = GeneratorConfig(),
    progress: bool = True,
) -> ColdStartEmbeddings:
    """Fit content -> warm embedding by MSE; early stopping on cold validation NDCG@20."""
    torch.manual_seed(config.seed)
    inputs = standardize(content, dataset.warm_items)
    warm = dataset.warm_items
    targets = torch.from_numpy(item_embeddings[warm])
    model = ContentMLP(inputs.shape[1], item_embeddings.shape[1], config.hidden, config.dropout)
    cold = cold_item_ids(dataset)

    def cold_table() -> np.ndarray:
        items = item_embeddings.copy()
        with torch.no_grad():
            items[cold] = model(inputs[cold]).numpy()
        return items

    def batch_loss(batch: np.ndarray) -> torch.Tensor:
        return (model(inputs[warm[batch]]) - targets[batch]).pow(2).sum(1).mean()

    training = fit_with_early_stopping(
        model,
        len(warm),
        batch_loss,
        lambda: validation_ndcg(dataset, user_embeddings, cold_table(), "cold"),
        config,
        description="deepmusic",
        progress=progress,
    )
    items, scale = choose_cold_scale(dataset, user_embeddings, cold_table())
    return ColdStartEmbeddings(
        user_embeddings,
        items,
        {**training, **scale, "generator": config.to_dict()},
        ContentMap.fitted_on(model, content, warm),
    )
