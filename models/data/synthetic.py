"""Small synthetic data sets with planted preferences, for unit tests and demos.

Every item belongs to one topic and its text is drawn from that topic's words, so a
content encoder can tell topics apart; every user prefers a few topics, so collaborative
models and content mappings both have something real to learn, and a test can assert they
beat chance.
"""

from __future__ import annotations

import numpy as np

from models.data.dataset import ColdStartDataset
from models.data.split import split_cold_start

TOPIC_WORDS: tuple[tuple[str, ...], ...] = (
    ("galaxy", "star", "orbit", "telescope", "planet", "cosmic"),
    ("protein", "gene", "cell", "enzyme", "genome", "membrane"),
    ("network", "graph", "node", "routing", "protocol", "packet"),
    ("market", "price", "trade", "finance", "stock", "economy"),
    ("neuron", "brain", "cortex", "synapse", "memory", "cognition"),
    ("climate", "ocean", "carbon", "rainfall", "glacier", "weather"),
    ("learning", "model", "training", "gradient", "dataset", "inference"),
    ("poetry", "novel", "author", "verse", "narrative", "literature"),
)


def make_synthetic(
    n_users: int = 200,
    n_items: int = 300,
    n_topics: int = 4,
    interactions_per_user: int = 15,
    seed: int = 0,
    words_per_text: int = 5,
) -> ColdStartDataset:
    """A cold-start data set whose users each favour one or two of ``n_topics`` topics.

    Users pick items of their favourite topics 90% of the time; the rest is uniform noise.
    The result goes through the paper's splitter (20% cold items, 8:1:1 warm split).
    """
    if not 1 <= n_topics <= len(TOPIC_WORDS):
        raise ValueError(f"n_topics must be in [1, {len(TOPIC_WORDS)}]")
    rng = np.random.default_rng(seed)
    item_topic = rng.integers(n_topics, size=n_items)
    texts = tuple(
        " ".join(rng.choice(TOPIC_WORDS[topic], size=words_per_text)) for topic in item_topic
    )
    by_topic = [np.flatnonzero(item_topic == t) for t in range(n_topics)]
    pairs = []
    for user in range(n_users):
        liked = rng.choice(n_topics, size=min(2, n_topics), replace=False)
        liked_items = np.concatenate([by_topic[t] for t in liked])
        n_liked = int(round(0.9 * interactions_per_user))
        chosen = rng.choice(liked_items, size=min(n_liked, len(liked_items)), replace=False)
        noise = rng.choice(n_items, size=interactions_per_user - len(chosen), replace=False)
        for item in np.union1d(chosen, noise):
            pairs.append((user, int(item)))
    return split_cold_start(
        name="synthetic",
        item_kind="item",
        n_users=n_users,
        item_texts=texts,
        interactions=np.asarray(pairs, dtype=np.int64),
        seed=seed,
    )
