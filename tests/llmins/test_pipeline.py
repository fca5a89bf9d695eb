"""LLM-InS end to end on the planted data set: filter, refine, simulate, update."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.evaluation import evaluate, validation_ndcg
from models.llmins.pipeline import PRECISION_DEPTH, simulate, warm_up
from models.llmins.simulator import SimulatorConfig
from models.llmins.variants import VARIANTS, LLMInSConfig, SimulatorTraining
from models.runs import Backbone
from tests.factories import small_workbench

SMALL = dict(k_filter=30, keep=8, lm_items=6, lm_candidates=10)


@pytest.fixture(scope="module")
def bench():
    return small_workbench(
        simulator=SimulatorConfig(batch_size=8, max_length=64, score_batch_size=32)
    )


def cold_recall(data, users, items) -> float:
    return evaluate(data, users, items, stage="test", k=5, tasks=("cold",))["cold"]["recall@5"]


def test_filter_candidates_beat_random_ones(bench) -> None:
    config = replace(VARIANTS["no-refine"], **SMALL)
    filtered = simulate(bench, config)
    random = simulate(bench, replace(VARIANTS["random"], **SMALL))
    assert filtered.info["test_precision"] > random.info["test_precision"] + 0.2
    cold = np.union1d(bench.dataset.cold_val_items, bench.dataset.cold_test_items)
    assert np.isin(filtered.pairs[:, 1], cold).all()
    assert len(filtered.pairs) == len(cold) * 8
    assert sum(filtered.info["filter_weights"].values()) > 0


def test_candidate_precision_is_also_measured_among_each_lists_first_100_users(bench) -> None:
    width = PRECISION_DEPTH + 20
    config = replace(VARIANTS["no-refine"], k_filter=width, keep=width, lm="never")
    simulation = simulate(bench, config)
    items = bench.stage_items("test")
    pairs = simulation.pairs[np.isin(simulation.pairs[:, 1], items)]
    # Without a refiner every candidate is kept, in the filter's order, item by item.
    users = pairs[:, 0].reshape(len(items), width)
    truth = bench.truth("test")
    labels = np.array([[u in truth[row] for u in users[row]] for row in range(len(items))])
    assert simulation.info[f"test_candidate_precision@{PRECISION_DEPTH}"] == pytest.approx(
        labels[:, :PRECISION_DEPTH].mean()
    )
    assert simulation.info["test_candidate_precision"] == pytest.approx(labels.mean())
    short = simulate(bench, replace(VARIANTS["no-refine"], **SMALL))
    assert f"test_candidate_precision@{PRECISION_DEPTH}" not in short.info


def test_the_collaborative_subtower_is_chosen_on_validation_and_recorded(bench) -> None:
    simulation = simulate(bench, replace(VARIANTS["no-refine"], **SMALL))
    record = simulation.info["collaborative_subtower"]
    assert [tried["dropout"] for tried in record["grid"]] == [0.0, 0.5]
    scores = [tried["val_cold_ndcg@20"] for tried in record["grid"]]
    assert record["chosen"]["dropout"] == record["grid"][int(np.argmax(scores))]["dropout"]
    subtower = bench.collaborative
    assert validation_ndcg(bench.dataset, subtower.users, subtower.items, "cold") == max(scores)


def test_online_warm_up_beats_the_untrained_cold_embeddings(bench) -> None:
    result = warm_up(bench, replace(VARIANTS["llmins-online"], lm="never", **SMALL), None)
    assert cold_recall(bench.dataset, result.users, result.items) > (
        cold_recall(bench.dataset, bench.users, bench.items) + 0.3
    )
    assert result.info["refiner_weights"]
    assert "simulate" in result.info["seconds"]


def test_the_lm_path_is_measured_and_its_use_decided_on_validation(bench) -> None:
    training = SimulatorTraining(examples=48, pseudo_cold_items=40)
    config = LLMInSConfig(update="online", simulator_training=training, **SMALL)
    simulation = simulate(bench, config)
    measured = simulation.info["lm_measurement"]
    for stage in ("val", "test"):
        assert set(measured[stage]["auc"]) == {"without_lm", "with_lm", "lm_alone"}
        assert measured[stage]["items"] == 6
    assert isinstance(simulation.info["lm_used"], bool)
    assert bench.simulator(training).training_info["examples"] == 48
    # Forced on, the simulator re-ranks each list's best lm_candidates (a cascade).
    forced = simulate(bench, replace(config, lm="always"))
    assert forced.info["lm_used"] and "lm" in forced.info["refiner_weights"]
    assert forced.info["test_pairs_per_item"] == SMALL["keep"]
    assert forced.info["test_adoption"] == SMALL["keep"] / SMALL["lm_candidates"]


def test_full_update_retrains_the_backbone_on_simulated_interactions(bench) -> None:
    from models.backbones import BackboneConfig, build_backbone
    from models.training import TrainConfig

    data = bench.dataset
    config = BackboneConfig(dim=32)
    model = build_backbone("mf", data.n_users, data.n_items, data.splits["warm_train"], config)
    import torch

    model.user_embedding.weight.data = torch.from_numpy(bench.users)
    model.item_embedding.weight.data = torch.from_numpy(bench.items)
    train = TrainConfig(lr=1e-2, batch_size=256, max_epochs=6, eval_every=2, patience=2)
    result = warm_up(
        bench,
        replace(VARIANTS["no-lm"], update="full", **SMALL),
        Backbone("mf", model, config, train),
    )
    assert result.info["full_update"]["epochs_run"] >= 2
    assert cold_recall(data, result.users, result.items) > cold_recall(
        data, bench.users, bench.items
    )


def test_filterllm_and_no_ft_read_the_text_to_users_encoder_they_name(bench) -> None:
    """``filterllm``: the fine-tuned encoder's top users alone; ``no-ft``: the frozen one."""
    filterllm = warm_up(bench, replace(VARIANTS["filterllm"], k_filter=30), None)
    assert filterllm.info["filter_weights"] == {"text2users": 1.0}
    assert filterllm.info["text_to_users"]["curve"][0]["epoch"] == 0
    assert "refiner_weights" not in filterllm.info
    assert filterllm.info["online_update"]["keep"] in (5, 10, 15, 25, 30)
    assert cold_recall(bench.dataset, filterllm.users, filterllm.items) > (
        cold_recall(bench.dataset, bench.users, bench.items) + 0.3
    )
    frozen = replace(VARIANTS["no-ft"], update="online", lm="never", k_filter=30)
    no_ft = simulate(bench, frozen)
    fine_tuned = simulate(bench, replace(frozen, text_encoder="fine-tuned"))
    assert not bench.text_to_users("frozen")[0].finetuned
    assert bench.text_to_users("fine-tuned")[0].finetuned
    assert not np.array_equal(no_ft.pairs, fine_tuned.pairs)


def test_the_prior_and_its_blend_are_chosen_on_validation_and_never_lose_to_the_fit(
    bench,
) -> None:
    config = replace(VARIANTS["llmins-online"], lm="never", k_filter=30)
    with_prior = warm_up(bench, config, None).info["online_update"]
    scores = with_prior["val_cold_ndcg_by_blend"]
    assert set(scores) == {"text2users", "deepmusic"}
    for by_weight in scores.values():
        assert set(by_weight) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
        assert by_weight["0.0"] == scores["text2users"]["0.0"]  # the fit alone, either way
    chosen = with_prior["blend"]
    best = max(score for by_weight in scores.values() for score in by_weight.values())
    assert scores[chosen["source"]][str(chosen["weight"])] == best
    without = warm_up(bench, replace(config, priors=()), None).info["online_update"]
    assert without["blend"]["weight"] == 0.0 and not without["val_cold_ndcg_by_blend"]


def test_the_deepmusic_prior_at_full_weight_serves_deepmusics_cold_ranking(bench) -> None:
    """Weight 1 is the content map alone: llmins can always fall back to the baseline's
    ranking of cold items (the map's rows, rescaled, rank users as DeepMusic's do)."""
    config = replace(VARIANTS["llmins-online"], lm="never", k_filter=30, priors=("deepmusic",))
    result = warm_up(bench, replace(config, keep=8, keeps=()), None)
    scores = result.info["online_update"]["val_cold_ndcg_by_blend"]["deepmusic"]
    deepmusic = bench.deepmusic
    assert scores["1.0"] == pytest.approx(
        validation_ndcg(bench.dataset, deepmusic.users, deepmusic.items, "cold"), abs=1e-6
    )


def test_the_full_update_keeps_the_online_table_where_retraining_serves_validation_worse(
    bench,
) -> None:
    """LightGCN serves items through its graph, so the retraining's starting point is not
    the online table: a retraining that cannot move (learning rate ~0) only propagates,
    and validation keeps the online rows and the backbone's users instead."""
    import torch

    from models.backbones import BackboneConfig, build_backbone
    from models.training import TrainConfig

    data = bench.dataset
    config = BackboneConfig(dim=32, layers=2)
    model = build_backbone(
        "lightgcn", data.n_users, data.n_items, data.splits["warm_train"], config
    )
    model.user_embedding.weight.data = torch.from_numpy(bench.users)
    model.item_embedding.weight.data = torch.from_numpy(bench.items)
    train = TrainConfig(lr=1e-9, batch_size=256, max_epochs=2, eval_every=1, patience=1)
    variant = replace(VARIANTS["no-lm"], **SMALL)
    result = warm_up(
        bench, replace(variant, update="full"), Backbone("lightgcn", model, config, train)
    )
    online = warm_up(bench, replace(variant, update="online"), None)

    record = result.info["full_update"]
    assert record["kept"] == "online"
    assert record["val_overall_ndcg@20"]["online"] > record["val_overall_ndcg@20"]["full"]
    np.testing.assert_array_equal(result.users, bench.users)
    np.testing.assert_array_equal(result.items, online.items)
    assert validation_ndcg(data, result.users, result.items, "overall") == pytest.approx(
        record["val_overall_ndcg@20"]["online"]
    )
