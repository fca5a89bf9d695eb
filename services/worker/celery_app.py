"""The Celery app (distributed mode): the broker, the result backend and their settings.

It knows no task, so the API can send work by task name (:class:`services.queues.
CeleryQueue`) without importing what the worker runs; :mod:`services.worker.tasks`
registers the tasks on this same app.
"""

from __future__ import annotations

from celery import Celery

from services.settings import Settings, get_settings


def make_celery(settings: Settings | None = None) -> Celery:
    """The Celery app on ``settings``' Redis (None: the process' settings)."""
    settings = settings or get_settings()
    celery = Celery("llmins", broker=settings.redis_url, backend=settings.redis_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.task_visibility_timeout_s},
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        # 0 turns the periodic refresh off: beat would read a 0-second schedule as "always".
        beat_schedule=(
            {"refresh": {"task": "llmins.refresh", "schedule": settings.refresh_interval_s}}
            if settings.refresh_interval_s > 0
            else {}
        ),
    )
    return celery


app = make_celery()
