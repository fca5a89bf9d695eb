"""Late-interaction history similarity and the choice of history items for prompts."""

from __future__ import annotations

import numpy as np

from models.llmins.history import HistorySimilarity, UserHistories, unit_rows


def brute_force(histories, content, targets, top, exclude_self):
    unit = unit_rows(content)
    out = np.full((len(targets), histories.n_users), -1.0)
    for row, target in enumerate(targets):
        for user in range(histories.n_users):
            history = histories.of(user)
            if exclude_self:
                history = history[history != target]
            if len(history):
                similarity = np.sort(unit[history] @ unit[target])[::-1]
                out[row, user] = similarity[:top].mean()
    return out


def random_histories(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 40
    pairs = [(u, int(i)) for u in range(n_users - 1) for i in rng.choice(n_items, 1 + 3 * u % 17)]
    # The last user has no history at all; user 0 has a single item.
    return UserHistories.from_pairs(np.array(pairs), n_users), rng.normal(size=(n_items, 8))


def test_history_similarity_matches_a_brute_force_reference() -> None:
    histories, content = random_histories()
    targets = np.arange(0, 40, 3)
    for exclude_self in (False, True):
        scorer = HistorySimilarity(histories, content, top=3)
        fast = scorer.scores(targets, exclude_self=exclude_self, chunk=4)
        reference = brute_force(histories, content, targets, 3, exclude_self)
        np.testing.assert_allclose(fast, reference, atol=1e-5)
    assert (fast[:, -1] == -1).all()


def test_most_similar_lists_closest_items_first_and_never_the_target() -> None:
    histories, content = random_histories()
    user = 5
    history = histories.of(user)
    target = int(history[0])
    unit = unit_rows(content)
    listed = histories.most_similar(user, unit[target], unit, count=4, exclude=target)
    assert target not in listed
    similarity = unit[listed] @ unit[target]
    assert np.all(np.diff(similarity) <= 1e-7)
    others = np.setdiff1d(history, np.append(listed, target))
    if len(others):
        assert (unit[others] @ unit[target]).max() <= similarity.min() + 1e-7


def test_mean_vectors_average_each_history() -> None:
    histories, content = random_histories()
    means = histories.mean_vectors(content.astype(np.float32))
    np.testing.assert_allclose(means[3], content[np.unique(histories.of(3))].mean(0), rtol=1e-5)
    assert (means[-1] == 0).all()
