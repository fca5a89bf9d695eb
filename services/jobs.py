"""The service's jobs, whichever queue carries them: a refresh under its job record, the
re-sending of items not yet warm, and the warm-up's retry back-off.

Both queues (:mod:`services.queues`: a thread in the embedded process, Celery workers in
distributed mode) run these same functions, so the two modes differ only in transport.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from services.refresh import refresh
from services.runtime import Runtime
from services.settings import Settings

if TYPE_CHECKING:
    from services.queues import TaskQueue

logger = logging.getLogger(__name__)

#: The longest wait between two tries of one warm-up.
MAX_BACKOFF_S = 300.0


def backoff_s(settings: Settings, retry: int) -> float:
    """Delay before retry number ``retry`` (1, 2, ...): doubling from the configured first."""
    return min(settings.warm_up_backoff_s * 2 ** (retry - 1), MAX_BACKOFF_S)


def run_refresh(runtime: Runtime, job_id: str | None) -> list[tuple[str, str]]:
    """Refresh under a job; returns the (item, job) warm-ups it asks for afterwards."""
    store = runtime.store
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


def requeue_pending(runtime: Runtime, queue: TaskQueue) -> int:
    """Enqueue every item not yet warm (after a restart or a lost message, or once the
    first model version is active); returns how many."""
    if runtime.store.active_version() is None:
        waiting = len(runtime.store.pending_items())
        if waiting:
            logger.info("%d items wait for the first model version", waiting)
        return 0
    count = 0
    for item_id in runtime.store.pending_items():
        job = runtime.store.latest_job(item_id)
        if job is None or job.status in ("succeeded", "failed"):
            job = runtime.store.create_job("warm_up", item_id)
        queue.enqueue(item_id, job.id)
        count += 1
    if count:
        logger.info("re-enqueued %d items that were not warm", count)
    return count
