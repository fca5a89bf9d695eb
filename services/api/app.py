"""The REST API: post items, read their warm-up, send interactions, get recommendations.

Thin by design: routes (one module per resource in :mod:`services.api.routes`) validate
requests with the pydantic models of ``schemas`` and hand the work to the store, the vector
index and the warm-up queue. Every refusal is a 4xx whose body says why; writes need the API
key when one is configured; bodies over ``max_body_bytes`` are refused before any handler
runs.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from services.api.dependencies import PROTECTED_READS
from services.api.middleware import LimitBody, Metrics, Observe, invalid_request
from services.api.routes import dashboard, health, items, jobs, users
from services.batching import MicroBatcher
from services.index import PointQuery
from services.queues import TaskQueue
from services.runtime import Runtime


def create_app(runtime: Runtime, queue: TaskQueue) -> FastAPI:
    """The API over ``runtime``'s stores, sending warm-ups to ``queue``."""
    app = FastAPI(
        title="llmins",
        version="0.1.0",
        description="Cold-item warm-up with LLM-InS: post new items, get recommendations.",
    )
    metrics = Metrics()

    def rank(wanted: list[PointQuery]) -> list[tuple]:
        """(hits, model version) per user's query: on the ranking thread, so the event
        loop never waits for the index while it ranks."""
        hits, version = runtime.index.top_for("items", "users", wanted)
        return [(answer, version) for answer in hits]

    def rank_at_once(wanted: PointQuery) -> tuple | None:
        """The answer when it is at hand (the user's ranking remembered): on the event
        loop, cheaper than handing it to the ranking thread and back."""
        found = runtime.index.top_for("items", "users", [wanted], wait=False)
        return None if found is None else (found[0][0], found[1])

    app.state.runtime = runtime
    app.state.queue = queue
    app.state.metrics = metrics
    # Concurrent recommendation queries share one pass over the item vectors.
    app.state.ranking = MicroBatcher(
        rank, at_hand=rank_at_once, observe=metrics.ranking_batch.observe
    )
    app.add_middleware(LimitBody, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(Observe, metrics=metrics)
    app.add_exception_handler(RequestValidationError, invalid_request)
    reads = PROTECTED_READS if runtime.settings.protect_reads else []
    for module in (items, users, jobs, dashboard):
        app.include_router(module.router, dependencies=reads)
    app.include_router(health.router)
    return app
