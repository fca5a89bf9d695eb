"""The item warmer: one item at a time, it must give what the offline pipeline gives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.llmins.online import ItemWarmer, fit_item_warmer
from models.llmins.pipeline import simulate, warm_up
from models.llmins.simulator import SimulatorConfig
from models.llmins.update import TARGETS, kept_pairs
from models.llmins.variants import VARIANTS, SimulatorTraining
from models.llmins.workbench import Workbench
from tests.factories import LocalSimulator, small_workbench

SMALL = dict(k_filter=30, keep=8)


def texts_of(bench: Workbench, items) -> list[str]:
    return [bench.dataset.item_texts[int(item)] for item in np.atleast_1d(items)]


@pytest.fixture(scope="module")
def bench() -> Workbench:
    return small_workbench()


@pytest.fixture(scope="module")
def fitted(bench):
    """The default warm-up's form: every signal, the kept count and the prior's blend
    chosen on validation."""
    config = replace(VARIANTS["llmins-online"], lm="never", k_filter=30)
    warmer, info, simulator = fit_item_warmer(bench, config)
    assert simulator is None
    offline = warm_up(bench, config, backbone=None)
    simulation = simulate(bench, config)
    pairs = kept_pairs(simulation.pairs, simulation.ranks, info["online_update"]["keep"])
    return warmer, info, offline, config, pairs


def test_the_warmer_keeps_the_count_and_blend_validation_chose(fitted) -> None:
    warmer, info, _, _, _ = fitted
    chosen = info["online_update"]
    assert warmer.config.keep == chosen["keep"] in (5, 10, 15, 25, 30)
    assert set(chosen["val_cold_ndcg_by_keep_target_and_ridge"]) >= {
        f"keep={k},target={target},ridge=0.1" for k in (5, 30) for target in TARGETS
    }
    assert warmer.target == chosen["target"]
    assert warmer.blend.weight == chosen["blend"]["weight"]
    assert "text2users" in warmer.signals and warmer.text_to_users is not None
    assert info["test_pairs_per_item"] == info[f"test_pairs_per_item@{chosen['keep']}"]


def test_one_item_at_a_time_matches_the_offline_run(bench, fitted) -> None:
    warmer, _, offline, _, offline_pairs = fitted
    items = bench.dataset.cold_test_items[:12]
    for item in items:
        warmed = warmer.warm(bench.content[item], texts_of(bench, item))
        assert len(warmed.kept[0]) == warmer.config.keep
        np.testing.assert_allclose(warmed.vectors[0], offline.items[item], rtol=1e-4, atol=1e-5)
    # The simulated users themselves: the vector is their (ridge) sum, so equal vectors from
    # different users would be a coincidence; check the users too, for a batch.
    batch = warmer.warm(bench.content[items], texts_of(bench, items))
    for row, item in enumerate(items):
        expected = set(offline_pairs[offline_pairs[:, 1] == item, 0].tolist())
        assert set(batch.kept[row].tolist()) == expected


def test_probabilities_are_best_first_and_in_range(fitted, bench) -> None:
    warmer = fitted[0]
    items = bench.dataset.cold_val_items[:5]
    warmed = warmer.warm(bench.content[items], texts_of(bench, items))
    for probabilities in warmed.probabilities:
        assert np.all((probabilities > 0) & (probabilities < 1))
        assert np.all(np.diff(probabilities) <= 1e-12)


def test_save_and_load_give_the_same_answers(fitted, bench, tmp_path) -> None:
    warmer = fitted[0]
    items = bench.dataset.cold_test_items[:6]
    content = bench.content[items]
    before = warmer.warm(content, texts_of(bench, items))
    loaded = ItemWarmer.load(warmer.save(tmp_path / "warmer"))
    after = loaded.warm(content, texts_of(bench, items))
    assert loaded.blend == warmer.blend and loaded.target == warmer.target
    assert loaded.config == warmer.config
    for row in range(len(content)):
        np.testing.assert_array_equal(before.kept[row], after.kept[row])
    np.testing.assert_allclose(before.vectors, after.vectors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        warmer.content_vectors(content), loaded.content_vectors(content), rtol=1e-5, atol=1e-6
    )


def test_content_vectors_point_towards_the_items_users(fitted, bench) -> None:
    """The fallback vector alone ranks an item's real users above the others."""
    warmer = fitted[0]
    data = bench.dataset
    items = data.cold_test_items
    scores = warmer.content_vectors(bench.content[items]) @ warmer.users.T
    pairs = data.splits["cold_test"]
    positive = scores[np.searchsorted(items, pairs[:, 1]), pairs[:, 0]].mean()
    assert positive > scores.mean() + 0.5 * scores.std()


def test_the_warmer_refuses_what_it_cannot_run_per_item(bench) -> None:
    with pytest.raises(ValueError, match="per item"):
        fit_item_warmer(bench, VARIANTS["llmins"])


def test_a_warmer_that_asks_the_lm_matches_the_offline_cascade(tmp_path) -> None:
    """lm=always: the screen picks what the simulator scores, the refiner uses its answer."""
    bench = small_workbench(
        simulator=SimulatorConfig(batch_size=8, max_length=64, score_batch_size=32)
    )
    config = replace(
        VARIANTS["llmins-online"],
        lm="always",
        lm_items=6,
        lm_candidates=10,
        simulator_training=SimulatorTraining(examples=32),
        **SMALL,
    )
    warmer, info, simulator = fit_item_warmer(bench, config)
    assert warmer.uses_lm and simulator is not None and info["lm_used"]
    assert "lm" in warmer.refiner.names and "lm" not in warmer.screen.names
    items = bench.dataset.cold_test_items[:5]
    texts = [bench.dataset.item_texts[i] for i in items]
    warmed = warmer.warm(bench.content[items], texts, LocalSimulator(simulator).p_yes)
    offline = simulate(bench, config).pairs
    for row, item in enumerate(items):
        assert set(warmed.kept[row].tolist()) == set(offline[offline[:, 1] == item, 0].tolist())
    with pytest.raises(ValueError, match="pass texts"):
        warmer.warm(bench.content[items])
    loaded = ItemWarmer.load(warmer.save(tmp_path / "warmer"))
    again = loaded.warm(bench.content[items], texts, LocalSimulator(simulator).p_yes)
    for row in range(len(items)):
        np.testing.assert_array_equal(again.kept[row], warmed.kept[row])


def test_a_warmer_blending_the_deepmusic_map_matches_the_offline_run_after_a_reload(
    bench, tmp_path
) -> None:
    """The prior's map travels with the warmer: a new item gets the offline run's vector.
    (One simulated user per item fits too little for the fit alone to win validation.)"""
    config = replace(
        VARIANTS["llmins-online"], lm="never", k_filter=30, keep=1, keeps=(), priors=("deepmusic",)
    )
    warmer, info, _ = fit_item_warmer(bench, config)
    blend = info["online_update"]["blend"]
    assert blend["source"] == "deepmusic" and blend["weight"] > 0
    assert "deepmusic" in warmer.content_maps
    offline = warm_up(bench, config, backbone=None)
    loaded = ItemWarmer.load(warmer.save(tmp_path / "warmer"))
    items = bench.dataset.cold_test_items[:8]
    warmed = loaded.warm(bench.content[items], texts_of(bench, items))
    np.testing.assert_allclose(warmed.vectors, offline.items[items], rtol=1e-4, atol=1e-5)


def test_a_warmer_scoring_kept_users_by_confidence_matches_the_offline_run(bench) -> None:
    """Each kept user counts with the refiner's probability, per item as offline; and the
    vectors differ from the uniform fit's (the target is not ignored)."""
    base = replace(VARIANTS["llmins-online"], lm="never", k_filter=30, keep=10, keeps=(), priors=())
    warmers = {}
    for target in TARGETS:
        config = replace(base, targets=(target,))
        warmer, info, _ = fit_item_warmer(bench, config)
        assert warmer.target == info["online_update"]["target"] == target
        offline = warm_up(bench, config, backbone=None)
        items = bench.dataset.cold_test_items[:8]
        warmed = warmer.warm(bench.content[items], texts_of(bench, items))
        np.testing.assert_allclose(warmed.vectors, offline.items[items], rtol=1e-4, atol=1e-5)
        warmers[target] = warmed
    uniform, confident = warmers["uniform"].vectors, warmers["confidence"].vectors
    cosine = np.sum(uniform * confident, axis=1)
    cosine /= np.linalg.norm(uniform, axis=1) * np.linalg.norm(confident, axis=1)
    assert np.all(cosine < 1 - 1e-4) and np.all(cosine > 0.5)


def test_a_confidence_target_needs_the_refiner(fitted) -> None:
    with pytest.raises(ValueError, match="refiner"):
        replace(fitted[0], refiner=None, target="confidence")
