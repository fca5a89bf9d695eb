"""The worker's side of the refining service: P(Yes) from first-token log-probabilities.

One formula, P(Yes) = e^yes / (e^yes + e^no), over what an OpenAI-compatible completions
server returns for one generated token, so the same client works against vLLM
(`vllm serve BASE --enable-lora --lora-modules simulator=ADAPTER`) and against
``python -m services.simulator`` (which embedded mode starts as a child process).
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np

#: vLLM's default cap on logprobs per token.
TOP_LOGPROBS = 20


class SimulatorError(RuntimeError):
    """The refining service failed or answered something P(Yes) cannot be read from."""


def p_yes_from_top_logprobs(top: dict[str, float]) -> float:
    """P(Yes) from one token's top log-probabilities, keyed by token text.

    Tokens reading "Yes" or "No" once stripped of spaces are pooled with log-sum-exp: a
    server may list " Yes" and "Yes" as different tokens. Case is ignored too, because an
    uncased tokenizer (MiniLM's) decodes the answer token as "yes". An answer missing from
    the list counts as probability 0.
    """
    pooled = {"yes": -np.inf, "no": -np.inf}
    for text, logprob in top.items():
        answer = text.strip().lower()
        if answer in pooled:
            pooled[answer] = np.logaddexp(pooled[answer], logprob)
    if np.isinf(pooled["yes"]) and np.isinf(pooled["no"]):
        raise SimulatorError(f"neither Yes nor No among the returned tokens: {sorted(top)}")
    return float(1.0 / (1.0 + np.exp(pooled["no"] - pooled["yes"])))


class SimulatorClient:
    """P(Yes) per prompt from a completions server.

    Args:
        base_url: the server's OpenAI base URL, ``/v1`` included (``http://host:8001/v1``).
        model: the served name of the adapter (vLLM's ``--lora-modules NAME=...``).
        timeout_s: per request of ``batch_size`` prompts.
        batch_size: prompts per request.
        client: an httpx client to send with (connection pools, test transports); closed by
            :meth:`close` only when this object made it.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "simulator",
        timeout_s: float = 10.0,
        batch_size: int = 64,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self._owns_client = client is None
        self.client = client or httpx.Client()

    def p_yes(self, prompts: Sequence[str]) -> np.ndarray:
        """P(Yes) per prompt, in the order given."""
        out = np.zeros(len(prompts), dtype=np.float64)
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            for index, top in self._first_tokens(chunk).items():
                out[start + index] = p_yes_from_top_logprobs(top)
        return out

    def _first_tokens(self, prompts: list[str]) -> dict[int, dict[str, float]]:
        """Top log-probabilities of the first answer token, by prompt index."""
        body = {
            "model": self.model,
            "prompt": prompts,
            "max_tokens": 1,
            "logprobs": TOP_LOGPROBS,
            # vLLM samples at temperature 1 unless told; the logprobs do not depend on it.
            "temperature": 0.0,
        }
        url = f"{self.base_url}/completions"
        try:
            response = self.client.post(url, json=body, timeout=self.timeout_s)
        except httpx.TimeoutException as error:
            message = f"refining service at {url}: no answer in {self.timeout_s} s"
            raise SimulatorError(message) from error
        except httpx.HTTPError as error:
            raise SimulatorError(f"refining service at {url} unreachable: {error!r}") from error
        if response.status_code != 200:
            raise SimulatorError(f"refining service: {response.status_code} {response.text[:500]}")
        return read_choices(response, len(prompts))

    def health(self) -> bool:
        """Whether the server answers its ``/health`` (at the root, beside ``/v1``)."""
        root = self.base_url.removesuffix("/v1")
        try:
            return self.client.get(f"{root}/health", timeout=self.timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_choices(response: httpx.Response, expected: int) -> dict[int, dict[str, float]]:
    """``top_logprobs[0]`` of every choice by its ``index``: choice order is no promise."""
    try:
        tops = {
            choice["index"]: choice["logprobs"]["top_logprobs"][0]
            for choice in response.json()["choices"]
        }
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise SimulatorError(
            f"refining service: no top logprobs in its answer ({error!r}): {response.text[:500]}"
        ) from error
    if set(tops) != set(range(expected)):
        raise SimulatorError(f"expected {expected} choices, got indices {sorted(tops)}")
    return tops
