"""The Celery app's configuration, read without a broker."""

from __future__ import annotations

import pytest

from services.settings import Settings
from services.worker.celery_app import make_celery


def test_beat_schedules_the_refresh_at_the_configured_period(tmp_path) -> None:
    celery = make_celery(Settings(state_dir=tmp_path, refresh_interval_s=600))
    assert celery.conf.beat_schedule == {"refresh": {"task": "llmins.refresh", "schedule": 600}}


def test_a_zero_interval_leaves_beat_nothing_to_run(tmp_path) -> None:
    """0 is "off": a 0-second schedule entry would refresh again the moment one ends."""
    assert make_celery(Settings(state_dir=tmp_path, refresh_interval_s=0)).conf.beat_schedule == {}


def test_a_negative_interval_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="refresh_interval_s"):
        Settings(state_dir=tmp_path, refresh_interval_s=-1)
