"""Jobs (warm-ups, refreshes, trainings): read one, start a refresh or a training."""

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


#: The admin endpoints that start a model job: 202 with the job, queued.
MODEL_JOB = {
    "status_code": 202,
    "response_model": JobOut,
    "responses": ERRORS,
    "dependencies": WRITES,
}


@router.post("/v1/admin/refresh", **MODEL_JOB)
def post_refresh(runtime: RuntimeDep, queue: QueueDep) -> JobOut:
    """Retrain the backbone on real and simulated interactions now (a job)."""
    job = runtime.store.create_job("refresh")
    queue.enqueue_refresh(job.id)
    return JobOut(**vars(job))


@router.post("/v1/admin/train", **MODEL_JOB)
def post_train(runtime: RuntimeDep, queue: QueueDep) -> JobOut:
    """Train a new model version from the store's own items and real interactions, and
    switch to it (a job). Too little data fails the job, its error saying how much is
    needed (LLMINS_TRAIN_MIN_INTERACTIONS, LLMINS_TRAIN_MIN_ITEMS)."""
    job = runtime.store.create_job("train")
    queue.enqueue_train(job.id)
    return JobOut(**vars(job))
