"""Candidate users from the index's user profiles: what the exact scan gives, from Qdrant."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.llmins.history import unit_rows
from models.llmins.release import ModelRelease
from services.candidates import IndexCandidates
from services.index import PROFILES
from services.settings import Settings
from tests.factories import bag_of_words, planted_dataset
from tests.services.conftest import serve


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from serve(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def cold():
    data = planted_dataset()
    items = data.cold_test_items[:10]
    texts = [data.item_texts[item] for item in items]
    return bag_of_words(texts), texts


def test_the_served_warmer_holds_no_table_of_all_users(served) -> None:
    _, runtime, _ = served
    release = runtime.release()
    warmer = release.warmer
    assert warmer.signal_users is None and warmer.users is None and warmer.history is None
    assert isinstance(release.users, np.memmap)  # on disk, read only if asked
    assert isinstance(runtime.candidate_source(release), IndexCandidates)
    assert runtime.index.active_version(PROFILES) == release.version
    assert runtime.index.count(PROFILES) == len(release.user_ids)


#: A filter list short enough that the shortlists (150 users here) leave users out.
SHORT = 30


def shortened(warmer):
    return replace(warmer, config=replace(warmer.config, k_filter=SHORT))


@pytest.mark.parametrize("depth", [1, 2])
def test_index_candidates_keep_the_users_the_exact_scan_keeps(served, cold, depth) -> None:
    _, runtime, _ = served
    release = runtime.release()
    content, texts = cold
    source = replace(runtime.candidate_source(release), depth=depth)
    pools = source.pools(
        release.warmer.queries(content, release.warmer.text_to_users.vectors(texts, content)),
        content,
        SHORT,
    )
    assert max(len(pool.users) for pool in pools) < len(release.user_ids)
    from_index = shortened(release.warmer).warm(content, texts, source=source)
    exact = ModelRelease.load(runtime.store.active_version().path).warmer
    assert exact.has_tables
    scanned = shortened(exact).warm(content, texts)
    for row in range(len(texts)):
        np.testing.assert_array_equal(from_index.kept[row], scanned.kept[row])
        np.testing.assert_allclose(
            from_index.probabilities[row], scanned.probabilities[row], rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(from_index.vectors, scanned.vectors, rtol=1e-4, atol=1e-5)


def test_pools_are_shortlists_with_exact_scores(served, cold) -> None:
    """Each pool is the union of every signal's shortlist (fewer than all users), and each
    user's raw scores there are the exact scan's."""
    _, runtime, _ = served
    release = runtime.release()
    warmer = release.warmer
    content, texts = cold
    source = runtime.candidate_source(release)
    queries = warmer.queries(content, warmer.text_to_users.vectors(texts, content))
    exact = ModelRelease.load(runtime.store.active_version().path).warmer.exact_scan()
    full = exact.pools(queries, content, SHORT)
    shortlisted = replace(source, depth=1).pools(queries, content, SHORT)
    for pool, reference in zip(shortlisted, full, strict=True):
        assert SHORT <= len(pool.users) < len(reference.users)
        for name, raw in pool.raw.items():
            np.testing.assert_allclose(raw, reference.raw[name][pool.users], atol=1e-5)
            assert pool.mean[name] == pytest.approx(reference.mean[name], abs=1e-4)
            assert pool.std[name] == pytest.approx(reference.std[name], rel=1e-4)
        np.testing.assert_array_equal(pool.history_lengths, reference.history_lengths[pool.users])


@pytest.mark.parametrize("limit", [1, 7, 40])
def test_the_history_shortlist_is_the_users_with_the_closest_best_match(served, cold, limit):
    """What a MAX_SIM query would return: at least ``limit`` users, and every user whose
    history's best match with the item beats the shortlist's worst best match (bag-of-words
    items tie often: tied users may be in or out)."""
    _, runtime, _ = served
    content, _ = cold
    exact = ModelRelease.load(runtime.store.active_version().path).warmer.history
    unit = unit_rows(exact.content)
    lists = runtime.index.history_shortlists(content, limit)
    for row, shortlisted in enumerate(lists):
        query = unit_rows(content[row : row + 1])[0]
        best = np.array(
            [
                (unit[exact.histories.of(user)] @ query).max()
                if len(exact.histories.of(user))
                else -np.inf
                for user in range(exact.histories.n_users)
            ]
        )
        assert len(shortlisted) >= limit
        worst = best[shortlisted].min()
        closer = np.flatnonzero(best > worst + 1e-5)  # ties at the worst may go either way
        assert set(closer) <= set(shortlisted) <= set(np.flatnonzero(best >= worst - 1e-5))
        assert len(closer) < limit


def test_the_exact_setting_scans_every_user_in_process(served, cold) -> None:
    _, runtime, _ = served
    served_settings = runtime.settings
    runtime.settings = served_settings.model_copy(update={"candidates": "exact"})
    runtime._release = None  # loaded again under the new setting
    try:
        release = runtime.release()
        assert release.warmer.has_tables
        assert runtime.candidate_source(release) is None
        content, texts = cold
        assert len(release.warmer.warm(content, texts).kept) == len(texts)
    finally:
        runtime.settings = served_settings
        runtime._release = None
    assert not runtime.release().warmer.has_tables
    with pytest.raises(ValueError):
        Settings(candidates="nearest")
