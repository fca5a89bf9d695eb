"""The service's jobs, whichever queue carries them: a refresh under its job record, the
re-sending of items not yet warm, and the warm-up's retry back-off.

Both queues (:mod:`services.queues`: a thread in the embedded process, Celery workers in
distributed mode) run these same functions, so the two modes differ only in transport.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING

from services.bootstrap import NotEnoughData, train_from_store
from services.refresh import refresh
from services.runtime import Runtime
from services.settings import NO_DATASET, Settings

if TYPE_CHECKING:
    from services.queues import TaskQueue

logger = logging.getLogger(__name__)

#: The longest wait between two tries of one warm-up.
MAX_BACKOFF_S = 300.0


def backoff_s(settings: Settings, retry: int) -> float:
    """Delay before retry number ``retry`` (1, 2, ...): doubling from the configured first."""
    return min(settings.warm_up_backoff_s * 2 ** (retry - 1), MAX_BACKOFF_S)


def run_refresh(runtime: Runtime, job_id: str | None) -> list[tuple[str, str]]:
    """Refresh under a job; returns the (item, job) warm-ups it asks for afterwards.

    A service started empty has no version to refresh: its periodic refresh trains the
    first one from the store instead, once the store holds enough (until then the job
    succeeds, recording why it skipped).
    """
    store = runtime.store
    if store.active_version() is None and runtime.settings.dataset == NO_DATASET:
        return run_train(runtime, job_id, skip_when_short=True)
    if job_id:
        store.start_job(job_id)
    try:
        record = refresh(runtime)
    except Exception as error:
        if job_id:
            store.finish_job(job_id, "failed", error=f"{type(error).__name__}: {error}")
        raise
    if job_id:
        store.finish_job(job_id, "succeeded", result=record)
    return [(item_id, store.create_job("warm_up", item_id).id) for item_id in record["rewarm"]]


def run_train(
    runtime: Runtime, job_id: str | None, skip_when_short: bool = False
) -> list[tuple[str, str]]:
    """Train a version from the store under a job (:func:`train_from_store`); returns the
    warm-ups of the items that arrived while it trained.

    Too little data fails the job with the thresholds in its error, or, with
    ``skip_when_short`` (the periodic refresh), succeeds with them in its result.
    """
    store = runtime.store
    if job_id:
        store.start_job(job_id)
    try:
        version = train_from_store(runtime)
    except NotEnoughData as error:
        if job_id and skip_when_short:
            store.finish_job(job_id, "succeeded", result={"skipped": str(error)})
            return []
        if job_id:
            store.finish_job(job_id, "failed", error=str(error))
        raise
    except Exception as error:
        if job_id:
            store.finish_job(job_id, "failed", error=f"{type(error).__name__}: {error}")
        raise
    if job_id:
        store.finish_job(job_id, "succeeded", result={"version": version})
    return pending_warm_ups(runtime)


def recover_after_restart(runtime: Runtime) -> dict[str, list[str]]:
    """Clear what an embedded process killed mid-work left, before a new one serves.

    Its refresh or training jobs are marked failed (their process is gone; the next one
    starts afresh), and the model folders and index collections of versions it built but
    never registered are deleted. The store itself needs nothing: each write was one
    transaction, committed or rolled back (an interrupted import left nothing), and items
    not yet warm are sent again (:func:`requeue_pending`). Embedded mode only: in
    distributed mode another process may be running those jobs.
    """
    store = runtime.store
    failed = store.fail_unfinished_jobs(
        ("refresh", "train"), "interrupted: the process stopped before the job ended"
    )
    registered = {record.id for record in store.versions()}
    folders = []
    if runtime.models_dir.is_dir():
        for folder in runtime.models_dir.iterdir():
            if folder.is_dir() and folder.name not in registered:
                shutil.rmtree(folder)
                folders.append(folder.name)
    collections = runtime.index.drop_versions_except(registered)
    recovered = {"jobs": failed, "folders": folders, "collections": collections}
    if any(recovered.values()):
        logger.warning("cleared what an interrupted process left: %s", recovered)
    return recovered


def pending_warm_ups(runtime: Runtime) -> list[tuple[str, str]]:
    """(item, job) of every item not yet warm, a new job where its last one ended."""
    warm_ups = []
    for item_id in runtime.store.pending_items():
        job = runtime.store.latest_job(item_id)
        if job is None or job.status in ("succeeded", "failed"):
            job = runtime.store.create_job("warm_up", item_id)
        warm_ups.append((item_id, job.id))
    return warm_ups


def requeue_pending(runtime: Runtime, queue: TaskQueue) -> int:
    """Enqueue every item not yet warm (after a restart or a lost message); returns how
    many. Before the first model version there is nothing to warm them with: they wait."""
    if runtime.store.active_version() is None:
        waiting = len(runtime.store.pending_items())
        if waiting:
            logger.info("%d items wait for the first model version", waiting)
        return 0
    warm_ups = pending_warm_ups(runtime)
    for item_id, job_id in warm_ups:
        queue.enqueue(item_id, job_id)
    if warm_ups:
        logger.info("re-enqueued %d items that were not warm", len(warm_ups))
    return len(warm_ups)
