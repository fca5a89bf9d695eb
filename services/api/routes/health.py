"""Probes and metrics: liveness, readiness, Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.dependencies import RuntimeDep
from services.api.schemas import Problem
from services.settings import NO_DATASET

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": Problem}})
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Readiness: the store answers and a model version is active and indexed (a service
    started empty, ``LLMINS_DATASET=none``, is ready without one: it serves fallbacks)."""
    problems = []
    try:
        active = runtime.store.active_version()
    except Exception as error:  # the store itself is down
        return JSONResponse({"detail": f"store: {type(error).__name__}"}, status_code=503)
    if active is None and runtime.settings.dataset == NO_DATASET:
        return JSONResponse({"status": "ready", "model_version": None, "fallback": "popular"})
    if active is None:
        problems.append("no model version is active (bootstrap has not run)")
    try:
        if runtime.index.active_version("items") is None:
            problems.append("the items index has no active collection")
    except Exception as error:
        problems.append(f"vector index: {type(error).__name__}")
    if problems:
        return JSONResponse({"detail": "; ".join(problems)}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": active.id, "fallback": None})


@router.get("/metrics")
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
