"""Where background work goes: a thread in this process (embedded) or Celery (distributed).

Two kinds of work: warming one posted item, and refreshing the model. The API only
enqueues; the item and its job are already in the relational store when it does, so a
lost message loses nothing: :func:`requeue_pending` sends every unfinished item again when
a process starts.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from services.refresh import refresh
from services.runtime import Runtime
from services.warmup import warm_up_item

logger = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def enqueue(self, item_id: str, job_id: str) -> None: ...

    def enqueue_refresh(self, job_id: str) -> None: ...

    def close(self) -> None: ...


class InProcessQueue:
    """One background thread runs warm-ups and refreshes in arrival order (embedded mode).

    One thread, because the work is CPU-bound, and a refresh must not swap the indexes
    under a warm-up that is writing to them.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-up")
        self._pending: set[Future] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._timer: threading.Thread | None = None

    def refresh_every(self, seconds: float) -> None:
        """Enqueue a refresh every ``seconds`` (what Celery beat does in distributed mode)."""

        def loop() -> None:
            while not self._stopped.wait(seconds):
                self.enqueue_refresh(self.runtime.store.create_job("refresh").id)

        self._timer = threading.Thread(target=loop, name="refresh-timer", daemon=True)
        self._timer.start()

    def enqueue(self, item_id: str, job_id: str) -> None:
        self._submit(self._warm_up, item_id, job_id)

    def enqueue_refresh(self, job_id: str) -> None:
        self._submit(self._refresh, job_id)

    def _submit(self, work, *args) -> None:
        future = self.executor.submit(work, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _warm_up(self, item_id: str, job_id: str) -> None:
        try:
            warm_up_item(self.runtime, item_id, job_id)
        except Exception:  # recorded on the item and its job by warm_up_item
            logger.warning("item %s stays degraded until it is retried", item_id)

    def _refresh(self, job_id: str) -> None:
        try:
            for item_id, job in run_refresh(self.runtime, job_id):
                self.enqueue(item_id, job)
        except Exception:  # recorded on the job by run_refresh
            logger.exception("refresh job %s failed; the previous version keeps serving", job_id)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def idle(self) -> bool:
        with self._lock:
            return not self._pending

    def close(self) -> None:
        self._stopped.set()
        self.executor.shutdown(wait=True, cancel_futures=False)


class CeleryQueue:
    """Sends the work to the Celery workers over the broker (distributed mode)."""

    def enqueue(self, item_id: str, job_id: str) -> None:
        from services.worker.tasks import warm_up

        warm_up.delay(item_id, job_id)

    def enqueue_refresh(self, job_id: str) -> None:
        from services.worker.tasks import refresh_model

        refresh_model.delay(job_id)

    def close(self) -> None:
        return None


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
    """Enqueue every item not yet warm (after a restart or a lost message); returns how many."""
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
