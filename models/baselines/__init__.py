"""Embedding-simulation baselines: content -> behavioural embedding (DeepMusic, ALDI)."""

from models.baselines.generator import GeneratorConfig

#: Each baseline's generator settings, chosen on CiteULike's cold *validation* NDCG@20 over
#: an MF backbone (sweeps and commands: docs/results.md).
TUNED: dict[str, GeneratorConfig] = {
    "deepmusic": GeneratorConfig(),
    "aldi": GeneratorConfig(lr=3e-4, weight_decay=1e-3, dropout=0.5),
}
