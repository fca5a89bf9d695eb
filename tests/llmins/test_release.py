"""A model version: trained on a data set, saved, loaded, refreshed on new interactions."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.backbones import BackboneConfig
from models.llmins.release import (
    ModelRelease,
    refitted_collaborative_map,
    refresh_release,
    train_release,
)
from models.llmins.towers import history_inputs
from models.runs import RunConfig
from models.training import TrainConfig
from tests.factories import bag_of_words, planted_dataset


@pytest.fixture(scope="module")
def release() -> ModelRelease:
    data = planted_dataset()
    config = RunConfig(
        backbone="mf",
        backbone_config=BackboneConfig(dim=32),
        train_config=TrainConfig(lr=1e-2, batch_size=256, max_epochs=30, eval_every=2),
        progress=False,
    )
    return train_release(data, bag_of_words(data.item_texts), "v1", config, max_epochs=30)


def test_a_saved_release_loads_with_the_same_answers(release, tmp_path) -> None:
    data = planted_dataset()
    loaded = ModelRelease.load(release.save(tmp_path / "v1"))
    assert loaded.version == "v1" and loaded.user_ids == [str(u) for u in range(data.n_users)]
    np.testing.assert_array_equal(loaded.users, release.users)
    texts = [data.item_texts[i] for i in data.cold_test_items[:4]]
    content = bag_of_words(texts)
    np.testing.assert_allclose(
        loaded.warmer.warm(content, texts).vectors,
        release.warmer.warm(content, texts).vectors,
        atol=1e-6,
    )
    assert loaded.manifest["warmer"]["online_update"]["keep"] == loaded.warmer.config.keep
    assert loaded.manifest["data"]["fingerprint"] == data.fingerprint
    assert set(loaded.manifest["seconds"]) == {"backbone", "warmer"}
    stages = loaded.manifest["warmer_seconds_by_stage"]
    assert {"collaborative subtower", "signals"} <= set(stages)
    assert 0 < sum(stages.values()) <= loaded.manifest["seconds"]["warmer"]


def test_a_refreshed_version_saves_its_own_copy_of_the_adapter(release, tmp_path) -> None:
    """So that deleting the folder it was refreshed from leaves it whole."""
    adapter = tmp_path / "v1" / "simulator"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    refreshed = replace(release, manifest={**release.manifest, "simulator_path": str(adapter)})
    folder = refreshed.save(tmp_path / "v2")
    shutil.rmtree(tmp_path / "v1")
    path = Path(ModelRelease.load(folder).manifest["simulator_path"])
    assert path == (folder / "simulator").resolve()
    assert (path / "adapter_config.json").read_text() == "{}"


def test_refresh_learns_from_new_items_interactions(release) -> None:
    """Items added since training (here with uninformative vectors) get real interactions;
    the refresh trains their rows, so their other real users find them ranked higher."""
    data = planted_dataset()
    cold = data.cold_test_items
    start = release.items.copy()
    start[cold] = np.random.default_rng(0).normal(0.0, 0.01, (len(cold), start.shape[1]))
    pairs = data.splits["cold_test"]
    arrived = pairs[np.arange(len(pairs)) % 2 == 0]
    later = pairs[np.arange(len(pairs)) % 2 == 1]
    no_simulated = np.zeros((0, 2), dtype=np.int64)
    refreshed = refresh_release(
        release,
        data.splits["warm_train"],
        arrived,
        no_simulated,
        start,
        cold,
        "v2",
        content=bag_of_words(data.item_texts),
        max_epochs=30,
        progress=False,
    )
    info = refreshed.manifest["refresh"]
    assert info["from"] == "v1" and info["new"] == len(arrived) and info["held_out"] >= 20
    # The real interactions it started from, not the item table's row count.
    assert info["trained"] == len(data.splits["warm_train"]) != data.n_items
    assert info["best_epoch"] > 0
    assert refreshed.warmer.users is refreshed.users
    # By default the text-to-users heads stay the first version's (docs/results.md).
    assert "text_to_users" not in info
    assert refreshed.warmer.text_to_users is release.warmer.text_to_users
    # So does the collaborative subtower's content map.
    assert "collaborative_map" not in info
    first_map = release.warmer.content_maps["collaborative"]
    assert refreshed.warmer.content_maps["collaborative"] is first_map

    def mean_rank_of_later(users: np.ndarray, items: np.ndarray) -> float:
        """Mean rank of each held-back (user, cold item) among the cold items."""
        scores = users @ items[cold].T
        column = {int(item): c for c, item in enumerate(cold)}
        return float(
            np.mean([(scores[u] > scores[u, column[int(i)]]).sum() for u, i in later.tolist()])
        )

    before = mean_rank_of_later(release.users, start)
    assert mean_rank_of_later(refreshed.users, refreshed.items) < 0.7 * before


def test_the_language_user_tower_gives_the_users_rows_from_their_histories(release) -> None:
    """What lets a refresh give a user whose history changed a new language row."""
    warmer = release.warmer
    inputs = history_inputs(
        warmer.history.histories, warmer.history.content, warmer.content_maps["language"]
    )
    np.testing.assert_allclose(
        warmer.user_tower(inputs), warmer.signal_users["language"], rtol=1e-4, atol=1e-5
    )


def test_refresh_gives_arrived_users_rows_and_every_user_their_real_history(
    release, tmp_path
) -> None:
    data = planted_dataset()
    content = bag_of_words(data.item_texts)
    cold = data.cold_test_items
    newcomer, read = data.n_users, cold[:3]
    arrived = np.concatenate([data.splits["cold_test"], [[newcomer, item] for item in read]])
    folded_in = release.items[read].mean(0, keepdims=True)
    refreshed = refresh_release(
        release,
        data.splits["warm_train"],
        arrived,
        np.zeros((0, 2), dtype=np.int64),
        release.items,
        np.zeros(0, dtype=np.int64),
        "v2",
        content=content,
        texts=data.item_texts,
        new_users=(["newcomer"], folded_in),
        refit_text_to_users=True,
        refit_collaborative_map=True,
        holdout=0.2,
        max_epochs=3,
        progress=False,
    )
    assert refreshed.user_ids == [*release.user_ids, "newcomer"]
    assert refreshed.manifest["refresh"]["new_users"] == 1
    warmer = refreshed.warmer
    assert len(refreshed.users) == newcomer + 1
    assert all(len(table) == newcomer + 1 for table in warmer.signal_users.values())
    histories = warmer.history.histories
    assert sorted(histories.of(newcomer).tolist()) == sorted(read.tolist())
    user, item = data.splits["cold_test"][0]
    assert item in histories.of(user)  # a real interaction since: in the history now
    assert item not in release.warmer.history.histories.of(user)
    inputs = history_inputs(histories, content, warmer.content_maps["language"])
    np.testing.assert_allclose(
        warmer.signal_users["language"], warmer.user_tower(inputs), rtol=1e-5
    )
    # The newcomer is a candidate for an item like the ones they read, and the new
    # tables survive a save and load.
    loaded = ModelRelease.load(refreshed.save(tmp_path / "v2")).warmer
    for current in (warmer, loaded):
        assert newcomer in current.warm(content[read[:1]], [data.item_texts[read[0]]]).candidates
    # Asked to, the refresh refitted the text-to-users heads to the new users (a record
    # says how), and the saved version keeps those heads.
    record = refreshed.manifest["refresh"]["text_to_users"]
    assert record["epochs_run"] >= record["best_epoch"] >= 0 and "start" in record
    texts = [data.item_texts[i] for i in cold]
    mapped = warmer.text_to_users.vectors(texts)
    assert not np.allclose(mapped.users, release.warmer.text_to_users.vectors(texts).users)
    np.testing.assert_allclose(loaded.text_to_users.vectors(texts).users, mapped.users, atol=1e-5)
    # And the collaborative subtower's content map, judged on a fifth of the items.
    record = refreshed.manifest["refresh"]["collaborative_map"]
    assert record["held_out_items"] >= 20 and record["best_val"] >= record["start_val"]
    refit = warmer.content_maps["collaborative"]
    np.testing.assert_allclose(
        loaded.content_maps["collaborative"](content), refit(content), atol=1e-5
    )


def test_a_refitted_collaborative_map_follows_a_backbone_whose_space_moved(release) -> None:
    """A backbone rotated as a whole ranks as before, but the first map aims at where items
    used to be: the refit, judged on held-out items, learns the new space, and ranks cold
    items neither fit saw better than the first map."""
    data = planted_dataset()
    content = bag_of_words(data.item_texts)
    dim = release.users.shape[1]
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, dim)))
    users = (release.users @ rotation).astype(np.float32)
    items = (release.items @ rotation).astype(np.float32)
    first = release.warmer.content_maps["collaborative"]
    refit, record = refitted_collaborative_map(
        release, content, data.splits["warm_train"], users, items, holdout=0.25, min_held_out=10
    )
    assert record["best_epoch"] > 0 and record["best_val"] > record["start_val"] + 0.05
    cold, pairs = data.cold_test_items, data.splits["cold_test"]

    def mean_rank(content_map) -> float:
        scores = users @ content_map(content[cold]).T
        column = {int(item): c for c, item in enumerate(cold)}
        return float(
            np.mean([(scores[u] > scores[u, column[int(i)]]).sum() for u, i in pairs.tolist()])
        )

    assert mean_rank(refit) < 0.8 * mean_rank(first)
    # The first version's map is left as it was (the refit trains a copy).
    assert refit is not first and refit.network is not first.network


def test_a_refit_is_skipped_with_a_reason_when_too_few_items_can_be_held_out(release) -> None:
    data = planted_dataset()
    refit, record = refitted_collaborative_map(
        release,
        bag_of_words(data.item_texts),
        data.splits["warm_train"],
        release.users,
        release.items,
        min_held_out=10_000,
    )
    assert refit is None and "fewer than 10000 items" in record["skipped"]
