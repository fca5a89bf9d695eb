"""Jobs (warm-ups and refreshes): read one, start a refresh."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from services.api.dependencies import ERRORS, WRITES, PathId, QueueDep, RuntimeDep
from services.api.schemas import JobOut

router = APIRouter(tags=["jobs"])


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
def get_job(job_id: PathId, runtime: RuntimeDep) -> JobOut:
    job = runtime.store.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id!r} is unknown")
    return JobOut(**vars(job))


@router.post(
    "/v1/admin/refresh",
    status_code=202,
    response_model=JobOut,
    responses=ERRORS,
    dependencies=WRITES,
)
def post_refresh(runtime: RuntimeDep, queue: QueueDep) -> JobOut:
    """Retrain the backbone on real and simulated interactions now (a job)."""
    job = runtime.store.create_job("refresh")
    queue.enqueue_refresh(job.id)
    return JobOut(**vars(job))
