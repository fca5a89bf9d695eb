"""What wraps every request: the body limit, the request metrics, and the 422 body.

Plain ASGI middlewares: Starlette's ``BaseHTTPMiddleware`` costs more than a
recommendation query does.
"""

from __future__ import annotations

import json
import time
from collections import deque
from datetime import timedelta
from threading import Lock
from typing import Any

from fastapi import HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram


async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    """The 422 of FastAPI, less the echo of each invalid input, in ASCII JSON.

    JSON parses into what cannot be sent back as JSON: NaN, Infinity and lone surrogates
    (``"\\ud800"``) broke the default 422 into a 500. Without the echo a 422 is also never
    a copy of a large body; the location and message still say what is wrong.
    """
    errors = [{key: value for key, value in e.items() if key != "input"} for e in error.errors()]
    return AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: a field name the client sent can hold a
    lone surrogate, which has no UTF-8 encoding but has a JSON escape."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


class LimitBody:
    """Refuses request bodies over ``max_bytes`` with a 413 (plain ASGI, as ``Observe``).

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


class Observe:
    """Counts and times every request, labelled by route template (a plain ASGI middleware:
    Starlette's ``BaseHTTPMiddleware`` costs more than a recommendation query does)."""

    def __init__(self, app, metrics: Metrics) -> None:
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
            seconds = time.perf_counter() - started
            self.metrics.latency.labels(method, path).observe(seconds)
            self.metrics.recent.add(path, seconds)


class RecentLatencies:
    """The last hour's latencies of some routes, with when each request ended.

    Prometheus histograms are cumulative: a chart of latency over time needs the points.
    One append per request (a bounded deque per route), read by the overview only.
    """

    def __init__(self, window: timedelta = timedelta(hours=1), per_route: int = 20_000) -> None:
        self.window_s = window.total_seconds()
        self.per_route = per_route
        self._points: dict[str, deque[tuple[float, float]]] = {}
        self._lock = Lock()

    def add(self, route: str, seconds: float, at: float | None = None) -> None:
        points = self._points.get(route)
        if points is None:
            with self._lock:
                points = self._points.setdefault(route, deque(maxlen=self.per_route))
        points.append((time.time() if at is None else at, seconds))

    def since(self, route: str, now: float | None = None) -> list[tuple[float, float]]:
        """(end time, seconds) of the route's requests within the window, oldest first."""
        start = (time.time() if now is None else now) - self.window_s
        return [point for point in list(self._points.get(route, ())) if point[0] >= start]


class Metrics:
    """The API's Prometheus series, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        #: The last hour's latencies per route, with their times (the dashboard's charts).
        self.recent = RecentLatencies()
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
