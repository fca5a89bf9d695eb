"""The REST API: post items, read their warm-up, send interactions, get recommendations.

Thin by design: requests are validated by the pydantic models of ``schemas``, work goes to
the store, the vector index and the warm-up queue. Every refusal is a 4xx whose body says
why; writes need the API key when one is configured; bodies over ``max_body_bytes`` are
refused before any handler runs.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from services.api.schemas import (
    ID_MAX_LENGTH,
    ID_PATTERN,
    InteractionsAccepted,
    InteractionsIn,
    ItemAccepted,
    ItemIn,
    ItemOut,
    JobOut,
    Problem,
    Recommendations,
    SimulatedUser,
)
from services.batching import MicroBatcher
from services.index import PointQuery
from services.queues import TaskQueue
from services.runtime import Runtime
from services.store import ItemConflict, UnknownIds
from services.warmup import show_by_content

logger = logging.getLogger(__name__)

ERRORS = {
    400: {"model": Problem},
    401: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
    413: {"model": Problem},
    422: {"model": Problem},
}

#: Ids in paths follow the rules of ids in bodies: garbage is a 422 before a store sees it.
PathId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


def create_app(runtime: Runtime, queue: TaskQueue) -> FastAPI:
    """The API over ``runtime``'s stores, sending warm-ups to ``queue``."""
    app = FastAPI(
        title="llmins",
        version="0.1.0",
        description="Cold-item warm-up with LLM-InS: post new items, get recommendations.",
    )
    metrics = _Metrics()

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

    # Concurrent recommendation queries share one pass over the item vectors.
    ranking = MicroBatcher(rank, at_hand=rank_at_once, observe=metrics.ranking_batch.observe)
    app.add_middleware(_LimitBody, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(_Observe, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _invalid_request)

    def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        expected = runtime.settings.api_key
        if expected is None:
            return
        # Constant time: a comparison that stops at the first difference leaks the key.
        secret = expected.get_secret_value().encode()
        if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), secret):
            raise HTTPException(401, "a valid X-API-Key header is required for this endpoint")

    writes = [Depends(require_key)]

    @app.post(
        "/v1/items",
        status_code=202,
        response_model=ItemAccepted,
        responses={**ERRORS, 200: {"model": ItemAccepted}},
        dependencies=writes,
    )
    def post_item(item: ItemIn, response: Response) -> ItemAccepted:
        """Store the item (queued), index its content vector, and enqueue its warm-up.

        Idempotent on the id: the same text again answers 200 with the first job; another
        text under a known id is a 409.
        """
        try:
            record, job, created = runtime.store.submit_item(item.id, item.text)
        except ItemConflict as error:
            raise HTTPException(409, str(error)) from None
        if created:
            show_by_content(runtime, record.id)
            queue.enqueue(record.id, job.id)
        else:
            response.status_code = 200
        return ItemAccepted(item_id=record.id, job_id=job.id, status=record.status)

    @app.get("/v1/items/{item_id}", response_model=ItemOut, responses=ERRORS)
    def get_item(item_id: PathId) -> ItemOut:
        record = runtime.store.get_item(item_id)
        if record is None:
            raise HTTPException(404, f"item {item_id!r} is unknown")
        users = runtime.store.simulated_for(item_id)
        source = "refiner"
        if users and runtime.asked_lm(record.model_version):
            source = "refiner+lm"
        return ItemOut(
            id=record.id,
            status=record.status,
            origin=record.origin,
            model_version=record.model_version,
            simulated_users=[SimulatedUser(user_id=u, score=p, source=source) for u, p in users],
            timings=record.timings,
            error=record.error,
            created_at=record.created_at,
            warmed_at=record.warmed_at,
        )

    @app.post(
        "/v1/interactions",
        response_model=InteractionsAccepted,
        responses=ERRORS,
        dependencies=writes,
    )
    def post_interactions(body: InteractionsIn) -> InteractionsAccepted:
        """Record real interactions (repeats are no-ops); all or nothing."""
        pairs = [(i.user_id, i.item_id) for i in body.interactions]
        try:
            new = runtime.store.add_interactions(pairs)
        except UnknownIds as error:
            raise HTTPException(404, str(error)) from None
        return InteractionsAccepted(received=len(pairs), new=new)

    @app.get(
        "/v1/users/{user_id}/recommendations", response_model=Recommendations, responses=ERRORS
    )
    async def recommendations(
        user_id: PathId,
        k: Annotated[int, Query(ge=1, le=100)] = 20,
        pool: Literal["all", "warm", "cold"] = "all",
    ) -> JSONResponse:
        """The user's top-k items by the backbone's score, items they interacted with left out.

        The look-ups run on the event loop (they are remembered: microseconds, a database
        read for a user's first query); the ranking, the costly part, is batched with the
        queries that arrive meanwhile (:mod:`services.batching`).
        """
        store = runtime.store
        user_index = store.user_index(user_id)
        if user_index is None:
            raise HTTPException(404, f"user {user_id!r} is unknown")
        seen = store.seen_item_indices(user_id)
        cold = {"all": None, "warm": False, "cold": True}[pool]
        hits, version = await ranking.submit(PointQuery(user_index, k, seen, cold))
        ids = store.item_ids([index for index, _ in hits])
        # Built as JSON directly: validating our own answer against the response model
        # again is work on the hottest path (the model still documents it in OpenAPI).
        return JSONResponse(
            {
                "user_id": user_id,
                "pool": pool,
                "model_version": version,
                "items": [{"item_id": ids[i], "score": s} for i, s in hits if i in ids],
            }
        )

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def get_job(job_id: PathId) -> JobOut:
        job = runtime.store.get_job(job_id)
        if job is None:
            raise HTTPException(404, f"job {job_id!r} is unknown")
        return JobOut(**vars(job))

    @app.post(
        "/v1/admin/refresh",
        status_code=202,
        response_model=JobOut,
        responses=ERRORS,
        dependencies=writes,
    )
    def post_refresh() -> JobOut:
        """Retrain the backbone on real and simulated interactions now (a job)."""
        job = runtime.store.create_job("refresh")
        queue.enqueue_refresh(job.id)
        return JobOut(**vars(job))

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}})
    def readyz() -> JSONResponse:
        """Readiness: the store answers and a model version is active and indexed."""
        problems = []
        try:
            if runtime.store.active_version() is None:
                problems.append("no model version is active (bootstrap has not run)")
        except Exception as error:  # the store itself is down
            problems.append(f"store: {type(error).__name__}")
        try:
            if runtime.index.active_version("items") is None:
                problems.append("the items index has no active collection")
        except Exception as error:
            problems.append(f"vector index: {type(error).__name__}")
        if problems:
            return JSONResponse({"detail": "; ".join(problems)}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """The 422 of FastAPI, less the echo of each invalid input, in ASCII JSON.

    JSON parses into what cannot be sent back as JSON: NaN, Infinity and lone surrogates
    (``"\\ud800"``) broke the default 422 into a 500. Without the echo a 422 is also never
    a copy of a large body; the location and message still say what is wrong.
    """
    errors = [{key: value for key, value in e.items() if key != "input"} for e in error.errors()]
    return _AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


class _AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a field name the client sent can hold a
    lone surrogate, which has no UTF-8 encoding but has a JSON escape."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


class _LimitBody:
    """Refuses request bodies over ``max_bytes`` with a 413 (plain ASGI, as ``_Observe``).

    A declared Content-Length over the limit is refused before any handler runs, so the
    refusal changes nothing; a body without one (chunked) is counted as it arrives, and
    reading past the limit raises the 413 inside FastAPI's body parsing, before the handler.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reason = f"the request body is over the limit of {max_bytes} bytes"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            response = JSONResponse({"detail": "Content-Length is not a number"}, 400)
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self.reason}, 413)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes an HTTPException raised while it reads the body on to
                    # its handler, which answers it like every other refusal.
                    raise HTTPException(413, self.reason)
            return message

        await self.app(scope, counted_receive, send)


class _Observe:
    """Counts and times every request, labelled by route template (a plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` costs more than a recommendation query does)."""

    def __init__(self, app, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = route.path if route is not None else "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, path, str(status["code"])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - started)


class _Metrics:
    """The API's Prometheus series, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmins_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llmins_http_request_seconds",
            "HTTP request latency by method and route.",
            ["method", "route"],
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.ranking_batch = Histogram(
            "llmins_ranking_batch_size",
            "Recommendation queries ranked together in one pass over the item vectors.",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
