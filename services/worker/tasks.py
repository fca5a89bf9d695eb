"""The Celery tasks (distributed mode), registered on :mod:`services.worker.celery_app`.

``celery -A services.worker.tasks worker`` runs them; the broker and result backend are
the configured Redis. Tasks are acknowledged after they finish (``acks_late``) and
re-queued when a worker dies mid-task (after the broker's visibility timeout), so each one
must be idempotent: warming an item twice replaces its simulated interactions, never adds to
them. A worker that starts sends every item not yet warm again, so messages lost with a
restarted broker lose no item: the items are in the relational store.
"""

from __future__ import annotations

import logging
from functools import cache

from celery.signals import worker_init, worker_ready

from services.jobs import MAX_BACKOFF_S, requeue_pending, run_refresh, run_train
from services.queues import CeleryQueue
from services.runtime import Runtime
from services.settings import get_settings
from services.warmup import give_up, warm_up_item
from services.worker.celery_app import app

logger = logging.getLogger(__name__)


@cache
def runtime() -> Runtime:
    """One runtime per worker process, built on its first task."""
    return Runtime(get_settings())


@app.task(
    name="llmins.warm_up",
    bind=True,
    autoretry_for=(Exception,),
    dont_autoretry_for=(LookupError,),
    retry_backoff=get_settings().warm_up_backoff_s,
    retry_backoff_max=MAX_BACKOFF_S,
    max_retries=get_settings().warm_up_retries,
)
def warm_up(self, item_id: str, job_id: str | None = None) -> dict:
    """Warm one posted item (see :func:`services.warmup.warm_up_item`); ``failed`` once
    the last retry has failed too."""
    try:
        return warm_up_item(runtime(), item_id, job_id)
    except LookupError:
        raise
    except Exception:
        if self.request.retries >= self.max_retries:
            give_up(runtime(), item_id, self.max_retries)
        raise


@app.task(name="llmins.refresh")
def refresh_model(job_id: str | None = None) -> list[tuple[str, str]]:
    """Retrain and swap the model (see :mod:`services.refresh`), then re-warm what it missed.

    Not retried: a failed refresh leaves the previous version serving, and the next
    scheduled one starts afresh.
    """
    warm_ups = run_refresh(runtime(), job_id)
    for item_id, warm_up_job in warm_ups:
        warm_up.delay(item_id, warm_up_job)
    return warm_ups


@app.task(name="llmins.train")
def train_model(job_id: str | None = None) -> list[tuple[str, str]]:
    """Train a version from the store and switch to it (see
    :func:`services.bootstrap.train_from_store`), then warm what arrived meanwhile. Not
    retried: too little data fails the same way until more arrives."""
    warm_ups = run_train(runtime(), job_id)
    for item_id, warm_up_job in warm_ups:
        warm_up.delay(item_id, warm_up_job)
    return warm_ups


@worker_init.connect
def refuse_a_shared_local_index(sender, **_) -> None:
    """A worker of several processes (prefork) opens the index in each: a server's only.

    ``--pool solo`` (one process) may own a local folder, as the tests' workers do.
    """
    pool = getattr(sender.pool_cls, "__module__", str(sender.pool_cls))
    if "solo" not in pool and "threads" not in pool:
        try:
            get_settings().refuse_shared_local_index(f"a worker with the pool {pool}")
        except ValueError as error:
            logger.critical("%s; or run one process: --pool solo", error)
            raise SystemExit(1) from None


@worker_ready.connect
def send_pending_items(**_) -> None:
    """Enqueue every item not yet warm: the broker may have lost them (a restart)."""
    requeue_pending(runtime(), CeleryQueue(app))
