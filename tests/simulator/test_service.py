"""The refining service as a real process, over HTTP, against vLLM's response shape.

Both model kinds are served: the packaged MiniLM (encoder, a Yes/No head) and a tiny Llama
(causal, the whole vocabulary). The client's unit tests run against httpx's mock transport.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.llmins.simulator import LMSimulator, SimulatorConfig, packaged_smollm2
from services.simulator.client import (
    SimulatorClient,
    SimulatorError,
    p_yes_from_top_logprobs,
)
from services.simulator.process import free_port, stop
from tests.conftest import REPO_ROOT
from tests.factories import LocalSimulator
from tests.llmins.test_simulator import fit_toy

PROMPTS = [
    "User preference: apples, pears. Whether the user will like the target paper: plums?",
    "User preference: engines. Whether the user will like the target paper: gears?",
    "short",
    "User preference: rivers, lakes, seas. Whether the user will like the target paper: rain?",
    "User preference: a. Whether the user will like the target paper: b?",
]
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def answering_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama taught to answer " Yes" or " No" (even odds) to :data:`PROMPTS`.

    A random Llama spreads its first token over 30k words, so Yes and No are rarely both
    among the 20 a server returns; this one ranks them first, as a tuned LM would.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    yes, no = (tokenizer(text, add_special_tokens=False).input_ids[0] for text in (" Yes", " No"))
    batch = tokenizer(PROMPTS * 2, padding=True, return_tensors="pt")
    answers = torch.tensor([yes] * len(PROMPTS) + [no] * len(PROMPTS))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        loss = F.cross_entropy(model(**batch).logits[:, -1], answers)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("answering-llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def start_server(command: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``python -m services.simulator ...`` on a free port, once its /health answers."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop(process)
    pytest.fail(f"the simulator did not start:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module", params=["causal", "encoder"])
def served(request, answering_llama, tmp_path_factory):
    """(base url, the same simulator in process, the base name) of a server of each kind."""
    base_model = str(answering_llama) if request.param == "causal" else None
    # A trained adapter (serving without it would be caught), short of certainty.
    lr = 1e-2 if request.param == "causal" else 2e-3
    simulator = LMSimulator(SimulatorConfig(model_path=base_model, lr=lr, batch_size=8))
    fit_toy(simulator)
    adapter = simulator.save(tmp_path_factory.mktemp(f"adapter-{request.param}"))
    command = [sys.executable, "-m", "services.simulator", "--adapter", str(adapter)]
    command += ["--base", base_model] if base_model else []
    log = tmp_path_factory.mktemp("log") / "simulator.log"
    process, base = start_server(command, log)
    try:
        in_process = LMSimulator(SimulatorConfig(model_path=base_model), adapter_path=adapter)
        yield base, in_process, base_model or "all-MiniLM-L6-v2"
    finally:
        stop(process)


def complete(base: str, **body) -> httpx.Response:
    body = {"model": "simulator", "max_tokens": 1, **body}
    return httpx.post(f"{base}/v1/completions", json=body, timeout=60)


def only_choice(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    (choice,) = response.json()["choices"]
    return choice


def test_the_response_has_vllms_shape(served) -> None:
    base, simulator, _ = served
    response = complete(base, prompt=PROMPTS[0], logprobs=5, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["id"].startswith("cmpl-") and body["object"] == "text_completion"
    assert body["model"] == "simulator"
    assert abs(body["created"] - time.time()) < 60
    (choice,) = body["choices"]
    assert set(choice) == {"index", "text", "logprobs", "finish_reason", "stop_reason"}
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    assert choice["stop_reason"] is None
    logprobs = choice["logprobs"]
    assert set(logprobs) == {"text_offset", "token_logprobs", "tokens", "top_logprobs"}
    assert logprobs["tokens"] == [choice["text"]] and logprobs["text_offset"] == [0]
    (top,) = logprobs["top_logprobs"]
    # Greedy: the generated token is the likeliest, and its logprob is the one listed.
    assert choice["text"] == max(top, key=top.get)
    assert logprobs["token_logprobs"] == [top[choice["text"]]]
    prompt_tokens = len(simulator.tokenizer(PROMPTS[0]).input_ids)
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 1,
        "total_tokens": prompt_tokens + 1,
    }


def test_top_logprobs_are_log_probabilities_keyed_by_token_text(served) -> None:
    base, simulator, _ = served
    for asked in (1, 5, 20):
        top = only_choice(complete(base, prompt=PROMPTS[1], logprobs=asked, temperature=0))
        top = top["logprobs"]["top_logprobs"][0]
        assert 1 <= len(top) <= asked
        assert all(value <= 0 for value in top.values())
    # The 20 best of a distribution carry at most all of its mass; an encoder has 2 answers.
    assert np.logaddexp.reduce(list(top.values())) <= 1e-6
    if simulator.kind == "encoder":
        assert set(top) == {" Yes", " No"}
        assert np.logaddexp.reduce(list(top.values())) == pytest.approx(0.0, abs=1e-5)
    else:
        # Keys are texts as the tokenizer decodes them (MiniLM's vocabulary is uncased).
        assert {"yes", "no"} <= set(top)
        tokenizer = simulator.tokenizer
        assert set(top) <= {tokenizer.decode([token]) for token in range(len(tokenizer))}


def test_logprobs_are_null_unless_asked_and_zero_lists_the_generated_token(served) -> None:
    base, _, _ = served
    assert only_choice(complete(base, prompt=PROMPTS[0], temperature=0))["logprobs"] is None
    choice = only_choice(complete(base, prompt=PROMPTS[0], logprobs=0, temperature=0))
    # vLLM lists the generated token even when no top tokens are asked for.
    assert choice["logprobs"]["top_logprobs"] == [
        {choice["text"]: choice["logprobs"]["token_logprobs"][0]}
    ]


def test_a_list_of_prompts_answers_in_prompt_order(served) -> None:
    base, _, _ = served
    response = complete(base, prompt=PROMPTS, logprobs=3, temperature=0)
    assert response.status_code == 200, response.text
    batch = response.json()
    assert [c["index"] for c in batch["choices"]] == list(range(len(PROMPTS)))
    assert batch["usage"]["completion_tokens"] == len(PROMPTS)
    for prompt, choice in zip(PROMPTS, batch["choices"], strict=True):
        alone = only_choice(complete(base, prompt=prompt, logprobs=3, temperature=0))
        expected = alone["logprobs"]["top_logprobs"][0]
        got = choice["logprobs"]["top_logprobs"][0]
        assert choice["text"] == alone["text"] and got.keys() == expected.keys()
        np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-4)


def test_sampling_is_seeded_and_reports_the_models_own_logprobs(served) -> None:
    base, _, _ = served
    greedy = only_choice(complete(base, prompt=PROMPTS[2], logprobs=20, temperature=0))
    model_logprobs = greedy["logprobs"]["top_logprobs"][0]
    drawn = []
    for seed in range(10):
        body = {"prompt": PROMPTS[2], "logprobs": 20, "temperature": 2.0, "seed": seed}
        first, again = only_choice(complete(base, **body)), only_choice(complete(base, **body))
        assert first["text"] == again["text"]
        # Not the tempered distribution: the one the model gives, as vLLM reports by default.
        lp = first["logprobs"]["token_logprobs"][0]
        assert lp == pytest.approx(model_logprobs[first["text"]], abs=1e-5)
        drawn.append(first["text"])
    assert len(set(drawn)) > 1, drawn


def test_the_client_reads_the_in_process_probabilities(served) -> None:
    base, simulator, _ = served
    with SimulatorClient(f"{base}/v1", batch_size=2) as client:
        assert client.health()
        remote = client.p_yes(PROMPTS)
    local = simulator.score(PROMPTS)
    assert ((local > 0.01) & (local < 0.99)).all(), local  # both answers carry weight
    np.testing.assert_allclose(remote, local, atol=1e-4)
    np.testing.assert_allclose(LocalSimulator(simulator).p_yes(PROMPTS), local, atol=1e-5)


def test_concurrent_requests_take_turns_on_the_model(served) -> None:
    base, _, _ = served
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _: complete(base, prompt=PROMPTS, logprobs=2, temperature=0), range(4))
        )
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    tops = [[c["logprobs"]["top_logprobs"][0] for c in a.json()["choices"]] for a in answers]
    assert all(top == tops[0] for top in tops)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"prompt": "x", "max_tokens": 2}, 400, "max_tokens must be 1"),
        ({"prompt": "x", "logprobs": 21}, 400, "logprobs: Input should be less than or equal"),
        ({"prompt": "x", "logprobs": -1}, 400, "logprobs"),
        ({"prompt": "x", "temperature": -0.5}, 400, "temperature"),
        ({"prompt": "x", "n": 2}, 400, "n must be 1"),
        ({"prompt": "x", "stream": True}, 400, "stream"),
        ({"prompt": []}, 400, "prompt: "),
        ({"prompt": 5}, 400, "prompt"),
        ({}, 400, "prompt: Field required"),
        ({"prompt": ["a", ""]}, 400, "non-empty"),
        ({"prompt": "x", "model": "other"}, 404, "`other` does not exist"),
    ],
)
def test_bad_requests_get_a_reason(served, body, status, reason) -> None:
    base, _, _ = served
    response = complete(base, **body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_FIELDS and error["code"] == status
    assert reason in error["message"]


def test_bad_json_is_a_400_with_a_reason(served) -> None:
    base, _, _ = served
    response = httpx.post(
        f"{base}/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "invalid JSON" in response.json()["error"]["message"]


def test_models_lists_the_adapter_and_health_is_empty(served) -> None:
    base, _, base_name = served
    body = httpx.get(f"{base}/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "simulator" and card["object"] == "model"
    assert card["owned_by"] == "llmins" and card["root"] == base_name
    assert card["parent"] is None and isinstance(card["created"], int)
    health = httpx.get(f"{base}/health")
    assert health.status_code == 200 and health.content == b""


@pytest.mark.slow
def test_the_packaged_causal_lm_is_served_from_its_gguf_file(smollm2, tmp_path) -> None:
    """SmolLM2 as vLLM would serve it: the client reads the P(Yes) the model computes."""
    from tests.llmins.test_simulator import MOVIE_PROMPT

    gguf = str(packaged_smollm2())
    command = [sys.executable, "-m", "services.simulator", "--base", gguf]
    process, base = start_server(command, tmp_path / "simulator.log")
    try:
        choice = only_choice(complete(base, prompt=MOVIE_PROMPT, logprobs=20, temperature=0))
        (top,) = choice["logprobs"]["top_logprobs"]
        assert {"Yes", "No"} <= set(top)
        with SimulatorClient(f"{base}/v1", "simulator") as client:
            served = client.p_yes([MOVIE_PROMPT])
    finally:
        stop(process)
    np.testing.assert_allclose(served, smollm2.score([MOVIE_PROMPT]), atol=1e-4)


def test_a_missing_base_model_is_refused_in_one_line(tmp_path) -> None:
    command = [sys.executable, "-m", "services.simulator", "--base", str(tmp_path / "x.gguf")]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "no such model folder or GGUF file" in finished.stderr


def test_a_missing_adapter_folder_is_refused_in_one_line(tmp_path) -> None:
    command = [sys.executable, "-m", "services.simulator", "--adapter", str(tmp_path)]
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "no adapter_config.json" in finished.stderr


def test_p_yes_pools_spellings_and_needs_an_answer() -> None:
    both = {" Yes": np.log(0.3), "Yes": np.log(0.1), " No": np.log(0.4), "the": np.log(0.2)}
    assert p_yes_from_top_logprobs(both) == pytest.approx(0.4 / 0.8)
    assert p_yes_from_top_logprobs({"yes": np.log(0.2), "no ": np.log(0.6)}) == pytest.approx(0.25)
    assert p_yes_from_top_logprobs({"Yes": -0.1, "maybe": -3.0}) == 1.0
    assert p_yes_from_top_logprobs({" No": -0.1}) == 0.0
    with pytest.raises(SimulatorError, match="neither Yes nor No.*'maybe'"):
        p_yes_from_top_logprobs({"maybe": -0.1, "Yesterday": -2.0})


def mock_client(handler, **options) -> SimulatorClient:
    transport = httpx.MockTransport(handler)
    return SimulatorClient("http://sim/v1", client=httpx.Client(transport=transport), **options)


def completion(prompts: list[str], p_yes: dict[str, float]) -> dict:
    """A vLLM answer with the choices in reverse order, P(Yes) looked up by prompt."""
    choices = [
        {
            "index": index,
            "text": " Yes",
            "logprobs": {"top_logprobs": [{" Yes": np.log(p_yes[p]), " No": np.log(1 - p_yes[p])}]},
        }
        for index, p in enumerate(prompts)
    ]
    return {"choices": choices[::-1]}


def test_the_client_sends_vllm_a_scoring_request_and_reads_choices_by_index() -> None:
    truth = {f"prompt {i}": (i + 1) / 7 for i in range(5)}
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body)
        return httpx.Response(200, json=completion(body["prompt"], truth))

    with mock_client(handler, batch_size=2) as client:
        p_yes = client.p_yes(list(truth))
    np.testing.assert_allclose(p_yes, list(truth.values()))
    assert [len(body["prompt"]) for body in sent] == [2, 2, 1]
    assert {key: sent[0][key] for key in ("model", "max_tokens", "logprobs", "temperature")} == {
        "model": "simulator",
        "max_tokens": 1,
        "logprobs": 20,
        "temperature": 0.0,
    }


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (httpx.Response(503, text="overloaded"), "503 overloaded"),
        (httpx.Response(200, text="<html>"), "no top logprobs"),
        (httpx.Response(200, json={"choices": [{"index": 0, "logprobs": None}]}), "no top"),
        (httpx.Response(200, json={"choices": []}), "expected 1 choices"),
    ],
)
def test_the_client_turns_bad_answers_into_simulator_errors(answer, reason) -> None:
    with mock_client(lambda _: answer) as client, pytest.raises(SimulatorError, match=reason):
        client.p_yes(["x"])


def test_the_client_reports_timeouts_and_an_unreachable_service() -> None:
    def too_slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    slow = mock_client(too_slow, timeout_s=0.5)
    with pytest.raises(SimulatorError, match="no answer in 0.5 s"):
        slow.p_yes(["x"])
    client = SimulatorClient(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1)
    assert not client.health()
    with pytest.raises(SimulatorError, match="unreachable"):
        client.p_yes(["x"])
    client.close()
