"""The refining service: OpenAI-compatible completions over the LoRA-tuned simulator.

The subset of vLLM's protocol the worker needs, shaped exactly as vLLM answers it, so the
worker's client cannot tell the two apart: one generated token per prompt, with its top
log-probabilities keyed by token text. A list of prompts is scored in batches in one call.
The model is CPU-bound and not thread-safe, so requests take turns on it, off the event loop.

Where this server differs from vLLM: only ``max_tokens=1``, ``n=1`` and no streaming (it
refuses the rest with a 400 rather than answer something else); at ``temperature > 0`` the
token is sampled among the 20 likeliest (vLLM: the whole vocabulary); an over-long prompt
loses its beginning (vLLM refuses it), as the simulator was trained.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from models.llmins.simulator import LMSimulator

logger = logging.getLogger(__name__)

#: vLLM's default ``--max-logprobs``: the most top log-probabilities a request may ask for.
MAX_LOGPROBS = 20
#: What vLLM reports instead of -inf, which JSON cannot carry.
LOGPROB_FLOOR = -9999.0


class CompletionRequest(BaseModel):
    """What the server reads of an OpenAI completions request (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int = 16
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LOGPROBS)
    # None is OpenAI's and vLLM's "the default", which is 1.
    temperature: float | None = Field(default=1.0, ge=0.0)
    seed: int | None = None
    n: int = 1
    stream: bool = False

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt

    def refusal(self) -> str | None:
        """Why this server cannot answer the request as vLLM would, if it cannot."""
        if self.max_tokens != 1:
            return (
                f"max_tokens must be 1 (got {self.max_tokens}): this server only scores "
                "the first answer token"
            )
        if self.n != 1:
            return f"n must be 1 (got {self.n})"
        if self.stream:
            return "stream is not supported"
        if not all(self.prompts()):
            return "prompts must be non-empty strings"
        return None


def error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    """OpenAI's error body, as vLLM returns it (``code`` is the HTTP status)."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


def validation_reasons(exc: RequestValidationError) -> str:
    """One readable line per problem: ``field: what is wrong``."""
    reasons = []
    for problem in exc.errors():
        if problem["type"] == "json_invalid":
            detail = problem.get("ctx", {}).get("error", "")
            reasons.append(f"invalid JSON body at character {problem['loc'][-1]}: {detail}")
        else:
            field = ".".join(str(part) for part in problem["loc"][1:]) or "body"
            reasons.append(f"{field}: {problem['msg']}")
    return "; ".join(reasons)


def create_app(simulator: LMSimulator, model_name: str, base_name: str) -> FastAPI:
    """The server for ``simulator``, answering to ``model: model_name``."""
    app = FastAPI(title="llmins simulator", description=__doc__)
    lock = threading.Lock()
    created = int(time.time())
    # Sampling is reproducible per server run, or per request with `seed` (as in vLLM).
    server_rng = np.random.default_rng(simulator.config.seed)
    # What it scored, at /metrics as vLLM counts its prompts (a registry per app).
    registry = CollectorRegistry()
    scored = Counter("llmins_simulator_prompts", "Prompts scored.", registry=registry)
    scored_tokens = Counter(
        "llmins_simulator_prompt_tokens", "Prompt tokens scored.", registry=registry
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, validation_reasons(exc))

    @app.exception_handler(Exception)
    async def failed(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("completion failed")
        return error(500, f"{type(exc).__name__}: {exc}", "InternalServerError")

    @app.get("/health")
    def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def list_models() -> dict:
        card = {
            "id": model_name,
            "object": "model",
            "created": created,
            "owned_by": "llmins",
            "root": base_name,
            "parent": None,
        }
        return {"object": "list", "data": [card]}

    def infer(prompts: list[str]) -> tuple[list[dict[str, float]], int]:
        """First-token log-probabilities and the number of prompt tokens, one call at a time."""
        with lock:
            tops = simulator.first_token_logprobs(prompts, MAX_LOGPROBS)
            return tops, count_prompt_tokens(simulator, prompts)

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> JSONResponse:
        if request.model != model_name:
            return error(404, f"The model `{request.model}` does not exist.", "NotFoundError")
        if reason := request.refusal():
            return error(400, reason)
        prompts = request.prompts()
        tops, prompt_tokens = await run_in_threadpool(infer, prompts)
        scored.inc(len(prompts))
        scored_tokens.inc(prompt_tokens)
        rng = server_rng if request.seed is None else np.random.default_rng(request.seed)
        temperature = 1.0 if request.temperature is None else request.temperature
        choices = [
            choice(index, top, pick(top, temperature, rng), request.logprobs)
            for index, top in enumerate(tops)
        ]
        return JSONResponse(
            {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(prompts),
                    "total_tokens": prompt_tokens + len(prompts),
                },
            }
        )

    return app


def count_prompt_tokens(simulator: LMSimulator, prompts: Sequence[str]) -> int:
    """Tokens the model read: prompts are truncated to ``max_length`` as when scoring."""
    encoded = simulator.tokenizer(
        list(prompts), truncation=True, max_length=simulator.config.max_length
    )
    return sum(len(ids) for ids in encoded.input_ids)


def pick(top: dict[str, float], temperature: float, rng: np.random.Generator) -> str:
    """The generated token: the likeliest at temperature 0, else sampled among ``top``."""
    tokens = list(top)
    logprobs = np.array([top[token] for token in tokens])
    if temperature == 0:
        return tokens[int(np.argmax(logprobs))]
    weights = np.exp((logprobs - logprobs.max()) / temperature)
    return tokens[int(rng.choice(len(tokens), p=weights / weights.sum()))]


def choice(index: int, top: dict[str, float], token: str, logprobs: int | None) -> dict:
    """One prompt's answer; with ``logprobs``, vLLM's: the generated token and the best ones.

    Log-probabilities are the model's own, whatever the temperature (vLLM's default).
    """
    details = None
    if logprobs is not None:
        best = sorted(top.items(), key=lambda item: -item[1])[:logprobs]
        # vLLM lists the generated token too, so a sampled one may make logprobs + 1.
        listed = {text: max(value, LOGPROB_FLOOR) for text, value in [*best, (token, top[token])]}
        details = {
            "text_offset": [0],
            "token_logprobs": [max(top[token], LOGPROB_FLOOR)],
            "tokens": [token],
            "top_logprobs": [listed],
        }
    return {
        "index": index,
        "text": token,
        "logprobs": details,
        "finish_reason": "length",
        "stop_reason": None,
    }
