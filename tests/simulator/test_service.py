"""The refining service as a real process, over HTTP, against the vLLM response shape."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from models.llmins.simulator import LMSimulator, SimulatorConfig
from services.simulator.client import (
    SimulatorClient,
    SimulatorError,
    p_yes_from_top_logprobs,
)
from tests.conftest import REPO_ROOT
from tests.factories import free_port
from tests.llmins.test_simulator import fit_toy

PROMPTS = [
    "User preference: apples, pears. Whether the user will like the target paper: plums?",
    "User preference: engines. Whether the user will like the target paper: gears?",
    "short",
    "User preference: rivers, lakes, seas. Whether the user will like the target paper: rain?",
    "User preference: a. Whether the user will like the target paper: b?",
]


@pytest.fixture(scope="module", params=["causal", "encoder"])
def served(request, tiny_llama, tmp_path_factory):
    """(base url, the same simulator in process) for a running server of each kind."""
    base_model = str(tiny_llama) if request.param == "causal" else None
    simulator = LMSimulator(
        SimulatorConfig(model_path=base_model, lr=3e-2, batch_size=8, epochs=24)
    )
    if request.param == "causal":
        fit_toy(simulator)  # a random Llama's top tokens rarely include Yes or No; now they do
    adapter = simulator.save(tmp_path_factory.mktemp(f"adapter-{request.param}"))
    port = free_port()
    command = [sys.executable, "-m", "services.simulator", "--adapter", str(adapter)]
    command += ["--port", str(port)] + (["--base", base_model] if base_model else [])
    log = tmp_path_factory.mktemp("log") / "simulator.log"
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the simulator did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.5)
    yield base, LMSimulator(SimulatorConfig(model_path=base_model), adapter_path=adapter)
    process.terminate()
    process.wait(timeout=30)


def complete(base: str, **body) -> httpx.Response:
    return httpx.post(f"{base}/v1/completions", json={"model": "simulator", **body}, timeout=60)


def test_the_response_has_vllms_shape(served) -> None:
    base, _ = served
    response = complete(base, prompt=PROMPTS[0], max_tokens=1, logprobs=5, temperature=0)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["model"] == "simulator" and isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == [choice["text"]] and logprobs["text_offset"] == [0]
    top = logprobs["top_logprobs"][0]
    assert 2 <= len(top) <= 5 and all(value <= 0 for value in top.values())
    # Greedy: the generated token is the likeliest one, and its logprob is reported.
    assert choice["text"] == max(top, key=top.get)
    assert logprobs["token_logprobs"] == [top[choice["text"]]]
    usage = body["usage"]
    assert usage["completion_tokens"] == 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + 1


def test_a_list_of_prompts_answers_in_prompt_order(served) -> None:
    base, _ = served
    batch = complete(base, prompt=PROMPTS, max_tokens=1, logprobs=3, temperature=0).json()
    assert [c["index"] for c in batch["choices"]] == list(range(len(PROMPTS)))
    for prompt, choice in zip(PROMPTS, batch["choices"], strict=True):
        alone = complete(base, prompt=prompt, max_tokens=1, logprobs=3, temperature=0).json()
        expected = alone["choices"][0]["logprobs"]["top_logprobs"][0]
        got = choice["logprobs"]["top_logprobs"][0]
        assert got.keys() == expected.keys()
        np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-4)


def test_the_client_reads_the_in_process_probabilities(served) -> None:
    base, simulator = served
    with SimulatorClient(f"{base}/v1", batch_size=2) as client:
        assert client.health()
        remote = client.p_yes(PROMPTS)
    local = simulator.score(PROMPTS)
    # vLLM returns at most 20 tokens. Where only one answer is among them (the tiny Llama's
    # vocabulary is MiniLM's 30k words), the client's P is 1 or 0, on the right side of 1/2.
    both = (remote > 0) & (remote < 1)
    np.testing.assert_allclose(remote[both], local[both], atol=1e-4)
    assert ((remote[~both] == 1) == (local[~both] > 0.5)).all()
    if simulator.kind == "encoder":
        assert both.all()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"prompt": "x", "max_tokens": 2}, 400, "max_tokens must be 1"),
        ({"prompt": "x", "max_tokens": 1, "logprobs": 21}, 400, "logprobs"),
        ({"prompt": [], "max_tokens": 1}, 400, "prompt"),
        ({"max_tokens": 1}, 400, "prompt"),
        ({"prompt": [""], "max_tokens": 1}, 400, "non-empty"),
        ({"prompt": "x", "max_tokens": 1, "model": "other"}, 404, "does not exist"),
    ],
)
def test_bad_requests_get_a_reason(served, body, status, reason) -> None:
    base, _ = served
    response = httpx.post(f"{base}/v1/completions", json={"model": "simulator", **body})
    assert response.status_code == status
    assert reason in response.json()["error"]["message"]


def test_bad_json_is_a_400(served) -> None:
    base, _ = served
    response = httpx.post(
        f"{base}/v1/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_models_lists_the_adapter(served) -> None:
    base, _ = served
    body = httpx.get(f"{base}/v1/models").json()
    assert body["object"] == "list" and body["data"][0]["id"] == "simulator"


def test_p_yes_pools_spellings_and_needs_an_answer() -> None:
    both = {" Yes": np.log(0.3), "yes": np.log(0.1), " No": np.log(0.4), "the": np.log(0.2)}
    assert p_yes_from_top_logprobs(both) == pytest.approx(0.4 / 0.8)
    assert p_yes_from_top_logprobs({"Yes": -0.1, "maybe": -3.0}) == 1.0
    assert p_yes_from_top_logprobs({" No": -0.1}) == 0.0
    with pytest.raises(SimulatorError, match="neither Yes nor No"):
        p_yes_from_top_logprobs({"maybe": -0.1})


def test_an_unreachable_service_is_a_clear_error() -> None:
    client = SimulatorClient(f"http://127.0.0.1:{free_port()}/v1", timeout_s=1)
    assert not client.health()
    with pytest.raises(SimulatorError, match="unreachable"):
        client.p_yes(["x"])
