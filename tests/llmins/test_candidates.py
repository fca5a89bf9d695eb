"""Signal moments and the late-interaction score the index's candidates are scored with."""

from __future__ import annotations

import numpy as np

from models.llmins.candidates import SignalMoments
from models.llmins.history import HistorySimilarity, UserHistories, late_interaction, unit_rows


def history_of(n_users: int = 300, n_items: int = 80, seed: int = 0) -> HistorySimilarity:
    rng = np.random.default_rng(seed)
    pairs = np.array(
        [
            (user, item)
            for user in range(n_users)
            for item in rng.choice(n_items, rng.integers(0, 6))
        ]
    )
    histories = UserHistories.from_pairs(pairs, n_users)
    return HistorySimilarity(histories, rng.standard_normal((n_items, 16)).astype(np.float32), 3)


def test_late_interaction_is_the_scorers_score() -> None:
    history = history_of()
    target = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    unit = unit_rows(history.content)
    given = [unit[history.histories.of(user)] for user in range(history.histories.n_users)]
    np.testing.assert_allclose(
        late_interaction(target, given, 3), history.scores_of_vectors(target)[0], atol=1e-5
    )


def test_moments_are_exact_for_tables_and_for_few_users() -> None:
    history = history_of()
    rng = np.random.default_rng(2)
    table = rng.standard_normal((300, 8)).astype(np.float32)
    query, content = rng.standard_normal((4, 8)), rng.standard_normal((4, 16)).astype(np.float32)
    moments = SignalMoments.of({"collaborative": table}, history, sample=1024)
    mean, std = moments.of_items({"collaborative": query}, content)
    scores = query @ table.T.astype(np.float64)
    np.testing.assert_allclose(mean["collaborative"], scores.mean(1), rtol=1e-6)
    np.testing.assert_allclose(std["collaborative"], scores.std(1), rtol=1e-6)
    full = history.scores_of_vectors(content)
    np.testing.assert_allclose(mean["history"], full.mean(1), atol=1e-5)
    np.testing.assert_allclose(std["history"], full.std(1), atol=1e-5)


def test_a_sample_of_users_estimates_the_history_spread() -> None:
    history = history_of(n_users=3000)
    content = np.random.default_rng(3).standard_normal((6, 16)).astype(np.float32)
    sampled = SignalMoments.of({}, history, sample=500)
    assert sampled.reference.histories.n_users == 500
    mean, std = sampled.of_items({}, content)
    full = history.scores_of_vectors(content)
    np.testing.assert_allclose(mean["history"], full.mean(1), atol=0.1 * full.std(1).min())
    np.testing.assert_allclose(std["history"], full.std(1), rtol=0.15)
