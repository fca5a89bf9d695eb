"""The refining service: OpenAI-compatible completions over the LoRA-tuned simulator.

The subset of vLLM's protocol the worker needs, shaped exactly as vLLM answers it: one
generated token per prompt, with its top log-probabilities keyed by token text. A list of
prompts is scored in batches in one call. The model is CPU-bound and not thread-safe, so
requests take turns on it, off the event loop.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from models.llmins.simulator import LMSimulator


class CompletionRequest(BaseModel):
    """What the server reads of an OpenAI completions request (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str
    prompt: str | list[str] = Field(min_length=1)
    max_tokens: int = 16
    logprobs: int | None = Field(default=None, ge=0, le=20)
    temperature: float = Field(default=1.0, ge=0.0)
    seed: int | None = None


def error(status: int, message: str, kind: str = "BadRequestError") -> JSONResponse:
    """OpenAI's error body, which vLLM returns too."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}},
        status_code=status,
    )


def create_app(
    simulator: LMSimulator, model_name: str = "simulator", base_name: str = ""
) -> FastAPI:
    app = FastAPI(title="llmins simulator", description=__doc__)
    lock = threading.Lock()
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error(400, reasons)

    @app.get("/health")
    def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    def list_models() -> dict:
        card = {
            "id": model_name,
            "object": "model",
            "created": created,
            "owned_by": "llmins",
            "root": base_name or model_name,
            "parent": None,
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> JSONResponse:
        if request.model != model_name:
            return error(404, f"The model `{request.model}` does not exist.", "NotFoundError")
        if request.max_tokens != 1:
            return error(400, "max_tokens must be 1: this server scores the first answer token")
        prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
        if any(not p for p in prompts):
            return error(400, "prompts must be non-empty strings")
        top = 20  # the most vLLM returns; sampling at temperature > 0 draws among these

        def score() -> list[dict[str, float]]:
            with lock:
                return simulator.first_token_logprobs(prompts, top)

        tops = await run_in_threadpool(score)
        rng = np.random.default_rng(request.seed)
        choices = []
        for index, candidates in enumerate(tops):
            token = pick(candidates, request.temperature, rng)
            logprobs = None
            if request.logprobs is not None:
                best = dict(sorted(candidates.items(), key=lambda kv: -kv[1])[: request.logprobs])
                logprobs = {
                    "text_offset": [0],
                    "token_logprobs": [candidates[token]],
                    "tokens": [token],
                    "top_logprobs": [best],
                }
            choices.append(
                {
                    "index": index,
                    "text": token,
                    "logprobs": logprobs,
                    "finish_reason": "length",
                    "stop_reason": None,
                }
            )
        prompt_tokens = sum(len(simulator.tokenizer(p).input_ids) for p in prompts)
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


def pick(candidates: dict[str, float], temperature: float, rng: np.random.Generator) -> str:
    """The generated token: the likeliest at temperature 0, else sampled among ``candidates``."""
    tokens = list(candidates)
    logprobs = np.array([candidates[t] for t in tokens])
    if temperature == 0:
        return tokens[int(np.argmax(logprobs))]
    weights = np.exp((logprobs - logprobs.max()) / temperature)
    return tokens[int(rng.choice(len(tokens), p=weights / weights.sum()))]
