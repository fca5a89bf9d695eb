"""Where background work goes: a thread in this process (embedded) or Celery (distributed).

Two kinds of work: warming one posted item, and refreshing the model (both in
:mod:`services.jobs`). The API only enqueues; the item and its job are already in the
relational store when it does, so a lost message loses nothing:
:func:`services.jobs.requeue_pending` sends every unfinished item again when a process
starts. A failed warm-up is retried with exponential back-off (the refining
service may be down); the item is served by its content vector meanwhile.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from services.bootstrap import NotEnoughData
from services.jobs import backoff_s, run_refresh, run_train
from services.runtime import Runtime
from services.warmup import give_up, warm_up_item

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def enqueue(self, item_id: str, job_id: str) -> None: ...

    def enqueue_refresh(self, job_id: str) -> None: ...

    def enqueue_train(self, job_id: str) -> None: ...

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
        self._retries: set[threading.Timer] = set()
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

    def enqueue(self, item_id: str, job_id: str, retry: int = 0) -> None:
        self._submit(self._warm_up, item_id, job_id, retry)

    def enqueue_refresh(self, job_id: str) -> None:
        self._submit(self._model_job, run_refresh, job_id)

    def enqueue_train(self, job_id: str) -> None:
        self._submit(self._model_job, run_train, job_id)

    def _submit(self, work, *args) -> None:
        future = self.executor.submit(work, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _warm_up(self, item_id: str, job_id: str, retry: int) -> None:
        try:
            warm_up_item(self.runtime, item_id, job_id)
        except LookupError as error:  # no such item or no model: a retry fails the same way
            logger.warning("warm-up of item %s cannot run: %s", item_id, error)
        except Exception:  # recorded on the item and its job by warm_up_item
            self._retry_later(item_id, job_id, retry + 1)

    def _retry_later(self, item_id: str, job_id: str, retry: int) -> None:
        """Try again after a back-off, as Celery's autoretry does in distributed mode."""
        settings = self.runtime.settings
        if self._stopped.is_set():
            return  # degraded, and sent again at the next start
        if retry > settings.warm_up_retries:
            give_up(self.runtime, item_id, settings.warm_up_retries)
            return
        delay = backoff_s(settings, retry)
        logger.warning("item %s degraded; retry %d in %.1f s", item_id, retry, delay)

        def fire() -> None:
            with self._lock:
                self._retries.discard(timer)
            if not self._stopped.is_set():
                self.enqueue(item_id, job_id, retry)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._retries.add(timer)
        timer.start()

    def _model_job(self, run, job_id: str) -> None:
        """A refresh or a training (:func:`run_refresh`, :func:`run_train`), then the
        warm-ups it asks for."""
        try:
            for item_id, job in run(self.runtime, job_id):
                self.enqueue(item_id, job)
        except NotEnoughData as error:  # recorded on the job; not a fault of the service
            logger.warning("job %s: %s", job_id, error)
        except Exception:  # recorded on the job by run
            logger.exception("job %s failed; the previous version keeps serving", job_id)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def idle(self) -> bool:
        """No work running, queued or waiting for a retry."""
        with self._lock:
            return not self._pending and not self._retries

    def close(self) -> None:
        self._stopped.set()
        if self._timer is not None:
            # A tick that woke just before the stop has created its refresh job: it is
            # submitted before the executor shuts down, so no job is left queued for ever.
            self._timer.join()
        with self._lock:
            for timer in self._retries:
                timer.cancel()
            self._retries.clear()
        self.executor.shutdown(wait=True, cancel_futures=False)


class CeleryQueue:
    """Sends the work to the Celery workers over the broker (distributed mode).

    A broker that cannot be reached does not fail the request that enqueues: the item and
    its job are already stored, and :func:`services.jobs.requeue_pending` sends them when a
    worker starts.

    Args:
        celery: the Celery app to send through; None: :mod:`services.worker.celery_app`'s
            (configured by the settings).
    """

    def __init__(self, celery: Celery | None = None) -> None:
        if celery is None:
            from services.worker.celery_app import app as celery
        self.celery = celery

    def enqueue(self, item_id: str, job_id: str) -> None:
        self._send("llmins.warm_up", item_id, job_id)

    def enqueue_refresh(self, job_id: str) -> None:
        self._send("llmins.refresh", job_id)

    def enqueue_train(self, job_id: str) -> None:
        self._send("llmins.train", job_id)

    def _send(self, task: str, *args: str) -> None:
        try:
            self.celery.send_task(task, args=list(args))
        except Exception as error:  # kombu raises its own and redis' connection errors
            logger.warning(
                "broker unreachable (%s): %s%s stays in the store and is sent again when a "
                "worker starts",
                type(error).__name__,
                task,
                args,
            )

    def close(self) -> None:
        return None
