"""The worker's side of the refining service: P(Yes) from first-token log-probabilities.

One formula, P(Yes) = e^yes / (e^yes + e^no), over what an OpenAI-compatible completions
server returns for one generated token, so the same client works against vLLM
(`vllm serve BASE --enable-lora --lora-modules simulator=ADAPTER`) and against
``python -m services.simulator``. :class:`LocalSimulator` computes the same thing in
process (embedded mode, tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np

from models.llmins.simulator import LMSimulator

#: vLLM's default cap on logprobs per token.
TOP_LOGPROBS = 20


class SimulatorError(RuntimeError):
    """The refining service failed or answered something P(Yes) cannot be read from."""


def p_yes_from_top_logprobs(top: dict[str, float]) -> float:
    """P(Yes) from one token's top log-probabilities, keyed by token text.

    Tokens reading "yes" or "no" whatever their case and surrounding spaces (" Yes", "Yes",
    "yes" are different tokens to most tokenizers) are pooled with log-sum-exp.
    """
    pooled = {"yes": -np.inf, "no": -np.inf}
    for text, logprob in top.items():
        answer = text.strip().lower()
        if answer in pooled:
            pooled[answer] = np.logaddexp(pooled[answer], logprob)
    if np.isinf(pooled["yes"]) and np.isinf(pooled["no"]):
        raise SimulatorError(f"neither Yes nor No among the returned tokens: {sorted(top)[:20]}")
    return float(1.0 / (1.0 + np.exp(pooled["no"] - pooled["yes"])))


class SimulatorClient:
    """P(Yes) per prompt from a completions server at ``base_url`` (``.../v1``)."""

    def __init__(
        self,
        base_url: str,
        model: str = "simulator",
        timeout_s: float = 10.0,
        batch_size: int = 64,
        client: httpx.Client | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def p_yes(self, prompts: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(prompts), dtype=np.float64)
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            for index, top in self._first_tokens(chunk).items():
                out[start + index] = p_yes_from_top_logprobs(top)
        return out

    def _first_tokens(self, prompts: list[str]) -> dict[int, dict[str, float]]:
        body = {
            "model": self.model,
            "prompt": prompts,
            "max_tokens": 1,
            "logprobs": TOP_LOGPROBS,
            # vLLM samples at temperature 1 unless told; the logprobs do not depend on it.
            "temperature": 0.0,
        }
        try:
            response = self.client.post("/completions", json=body)
        except httpx.HTTPError as error:
            raise SimulatorError(f"refining service unreachable: {error!r}") from error
        if response.status_code != 200:
            raise SimulatorError(f"refining service: {response.status_code} {response.text[:500]}")
        choices = response.json()["choices"]
        # Choices carry the index of their prompt; their order is not a promise.
        tops = {c["index"]: c["logprobs"]["top_logprobs"][0] for c in choices}
        if set(tops) != set(range(len(prompts))):
            raise SimulatorError(f"expected {len(prompts)} choices, got indices {sorted(tops)}")
        return tops

    def health(self) -> bool:
        try:
            root = str(self.client.base_url).rstrip("/").removesuffix("/v1")
            return self.client.get(f"{root}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalSimulator:
    """The same ``p_yes`` over an in-process simulator, through the same formula."""

    def __init__(self, simulator: LMSimulator) -> None:
        self.simulator = simulator

    def p_yes(self, prompts: Sequence[str]) -> np.ndarray:
        tops = self.simulator.first_token_logprobs(prompts, TOP_LOGPROBS)
        return np.array([p_yes_from_top_logprobs(top) for top in tops])
