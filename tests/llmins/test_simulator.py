"""The LM simulator behind one interface: an encoder with a Yes/No head and a causal LM.

The causal path runs on a tiny, randomly initialised Llama built from a config (no download),
with the packaged MiniLM's tokenizer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.encoders import default_model_path
from models.llmins.prompts import (
    ANSWERS,
    INSTRUCTION,
    TEMPLATE,
    PromptBuilder,
    training_record,
)
from models.llmins.simulator import (
    LMSimulator,
    SimulatorConfig,
    answer_token_ids,
    loss_curve,
    model_kind,
    packaged_smollm2,
    target_token_mask,
)
from tests.factories import bag_of_words, planted_dataset

LIKED = "User preference: apples, pears. Whether the user will like the target paper: plums?"
DISLIKED = "User preference: engines, gears. Whether the user will like the target paper: plums?"
#: A prompt as PromptBuilder writes it, which an instruction-tuned model answers zero-shot.
MOVIE_PROMPT = TEMPLATE.format(
    instruction=INSTRUCTION.format(kind="movie"),
    input='User preference: "Star Wars (1977)", "Return of the Jedi (1983)", "Alien (1979)". '
    'Whether the user will like the target movie: "The Empire Strikes Back (1980)"?',
)


def fit_toy(simulator: LMSimulator) -> dict:
    prompts = [LIKED, DISLIKED] * 24
    labels = [1, 0] * 24
    return simulator.train(prompts, labels, progress=False)


@pytest.mark.parametrize("kind", ["encoder", "causal"])
def test_simulator_learns_yes_and_no_and_reloads_its_adapter(kind, tiny_llama, tmp_path) -> None:
    path = tiny_llama if kind == "causal" else None
    # The random tiny Llama starts far from any answer, so it gets more steps.
    epochs, lr = (24, 3e-2) if kind == "causal" else (3, 5e-3)
    config = SimulatorConfig(model_path=path and str(path), lr=lr, batch_size=8, epochs=epochs)
    simulator = LMSimulator(config)
    assert simulator.kind == kind
    before = simulator.score([LIKED, DISLIKED])
    info = fit_toy(simulator)
    after = simulator.score([LIKED, DISLIKED])
    assert after[0] > after[1] + 0.2, (before, after, info)
    saved = simulator.save(tmp_path / "adapter")
    adapter = json.loads((saved / "adapter_config.json").read_text())
    assert adapter["r"] <= 16
    reloaded = LMSimulator(config, adapter_path=saved)
    np.testing.assert_allclose(reloaded.score([LIKED, DISLIKED]), after, atol=1e-5)
    # The settings travel with the adapter: a refining service started from the folder
    # alone (python -m services.simulator --adapter) scores with the same base and length.
    assert SimulatorConfig.saved_with(saved) == config
    assert SimulatorConfig.saved_with(tmp_path) is None


def test_causal_p_yes_is_the_softmax_of_the_yes_and_no_tokens(tiny_llama) -> None:
    simulator = LMSimulator(SimulatorConfig(model_path=str(tiny_llama)))
    batch = simulator.tokenizer([LIKED], return_tensors="pt")
    with torch.no_grad():
        logits = simulator.model(**batch).logits[0, -1]
    yes, no = logits[simulator.answer_ids[1]], logits[simulator.answer_ids[0]]
    expected = float(torch.exp(yes) / (torch.exp(yes) + torch.exp(no)))
    assert simulator.score([LIKED])[0] == pytest.approx(expected, abs=1e-5)
    assert model_kind(tiny_llama) == "causal"
    assert model_kind(default_model_path()) == "encoder"


@pytest.mark.parametrize("kind", ["encoder", "causal"])
def test_first_token_logprobs_give_the_same_p_yes_as_score(kind, tiny_llama) -> None:
    """What the refining service returns is enough for its client to recompute score()."""
    from services.simulator.client import p_yes_from_top_logprobs

    path = str(tiny_llama) if kind == "causal" else None
    simulator = LMSimulator(SimulatorConfig(model_path=path))
    prompts = [LIKED, DISLIKED, LIKED + " and pears"]
    if kind == "causal":
        best = simulator.first_token_logprobs(prompts, top=20)
        assert all(len(top) <= 20 and max(top.values()) <= 0 for top in best)
        # The random model need not rank Yes/No among its best 20: ask for every token.
        tops = simulator.first_token_logprobs(prompts, top=len(simulator.tokenizer))
    else:
        tops = simulator.first_token_logprobs(prompts, top=20)
        assert all(set(top) == {" Yes", " No"} for top in tops)
    # Log-probabilities of a whole distribution: every answer (every token, for causal).
    for top in tops:
        assert np.logaddexp.reduce(list(top.values())) == pytest.approx(0.0, abs=1e-4)
    recomputed = [p_yes_from_top_logprobs(top) for top in tops]
    np.testing.assert_allclose(recomputed, simulator.score(prompts), atol=1e-5)


def test_prompts_follow_the_paper_form_and_never_list_the_target() -> None:
    from models.llmins.history import UserHistories

    data = planted_dataset()
    histories = UserHistories.from_pairs(data.splits["warm_train"], data.n_users)
    content = bag_of_words(data.item_texts)
    user = 3
    target = int(histories.of(user)[0])
    for history in ("similar", "random"):
        builder = PromptBuilder("paper", data.item_texts, histories, content, history=history)
        assert target not in builder.listed_items(user, target)
        assert len(builder.listed_items(user, target)) == min(5, len(histories.of(user)) - 1)
    text = builder.prompt(user, target)
    assert "determine whether the user will like the target paper" in text
    assert text.endswith("### Response:\n")
    record = training_record(text, 1)
    assert record["output"] == ANSWERS[1] == "Yes"
    assert record["input"].startswith("User preference: ")
    with pytest.raises(ValueError):
        PromptBuilder("paper", data.item_texts, histories, content, history="popular")


def test_an_over_long_prompt_keeps_its_target_and_loses_the_instruction() -> None:
    simulator = LMSimulator(SimulatorConfig(max_length=24))
    prompt = "### Instruction:\n" + "answer yes or no " * 20 + "\n" + LIKED
    batch = simulator._batch([prompt])
    assert batch["input_ids"].shape[1] == 24
    kept = simulator.tokenizer.decode(batch["input_ids"][0])
    assert "plums" in kept and "instruction" not in kept


def test_a_tokenizer_that_starts_both_answers_alike_is_refused() -> None:
    """A vocabulary without either answer reads both as [UNK]: P(Yes) would always be 0.5."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {"[UNK]": 0, "###": 1, "Response": 2, ":": 3, "Maybe": 4}
    raw = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    with pytest.raises(ValueError, match="same token '\\[UNK\\]'"):
        answer_token_ids(tokenizer)


def test_loss_curve_averages_equal_runs_of_steps() -> None:
    assert loss_curve([4.0, 2.0, 1.0, 1.0], points=2) == [(2, 3.0), (4, 1.0)]
    assert loss_curve([0.5], points=20) == [(1, 0.5)]
    assert loss_curve([]) == []


@pytest.mark.slow
def test_smollm2_loads_from_its_gguf_file_and_answers_the_paper_prompt(smollm2) -> None:
    assert smollm2.kind == "causal" and model_kind(packaged_smollm2()) == "causal"
    # After the response header's newline the model writes "Yes", not " Yes".
    no, yes = (smollm2.tokenizer.decode([token]) for token in smollm2.answer_ids)
    assert (no, yes) == ("No", "Yes")
    (top,) = smollm2.first_token_logprobs([MOVIE_PROMPT], top=20)
    # Untuned, the instruction-tuned model already answers with one of the two words.
    assert {"Yes", "No"} <= set(top)
    from services.simulator.client import p_yes_from_top_logprobs

    assert p_yes_from_top_logprobs(top) == pytest.approx(smollm2.score([MOVIE_PROMPT])[0], abs=1e-5)


def test_the_pair_head_reads_the_target_apart_from_the_history() -> None:
    simulator = LMSimulator(SimulatorConfig(head="pair"))
    prompts = [MOVIE_PROMPT, LIKED, "no target here"]
    batch = simulator._batch(prompts)
    targets = [
        simulator.tokenizer.decode(ids[mask.bool()])
        for ids, mask in zip(batch["input_ids"], batch["target_mask"], strict=True)
    ]
    assert targets == ["the empire strikes back ( 1980 )", "plums", ""]
    offsets = simulator.tokenizer(prompts, return_offsets_mapping=True, padding=True,
                                  return_tensors="pt")["offset_mapping"]  # fmt: skip
    assert target_token_mask(prompts, offsets).equal(batch["target_mask"])
    assert np.isfinite(simulator.score(prompts)).all()


def test_a_saved_head_reloads_as_the_kind_it_was(tmp_path) -> None:
    mean = LMSimulator(SimulatorConfig(head="mean", lr=5e-3, batch_size=8, epochs=3))
    fit_toy(mean)
    saved = mean.save(tmp_path / "adapter")
    reloaded = LMSimulator(SimulatorConfig(head="pair"), adapter_path=saved)
    assert reloaded.config.head == "mean"
    np.testing.assert_allclose(reloaded.score([LIKED, DISLIKED]), mean.score([LIKED, DISLIKED]),
                               atol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="head must be"):
        SimulatorConfig(head="cls")
