"""The warm-up of one posted item: embed, filter, refine, fit, store, index; and its
withdrawal, which every write of its vector respects.

The same function runs in the embedded mode's background thread and in a Celery worker. It
is idempotent: an item already warm under the active model is left alone, and the simulated
interactions of an item are replaced as a whole, so a redelivered task adds no duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from models.llmins.release import ModelRelease
from models.runs import StageTimer
from services.index import item_payload
from services.runtime import Runtime
from services.store import ItemRecord

logger = logging.getLogger(__name__)


def give_up(runtime: Runtime, item_id: str, retries: int) -> None:
    """Mark ``item_id`` ``failed``: its retries are spent.

    It keeps its content vector (still recommendable) and its last error, and is sent
    again at the next start (``failed`` is among the store's pending statuses).
    """
    item = runtime.store.get_item(item_id)
    if item is None or item.status == "warm":
        return
    last = item.error or "unknown error"
    runtime.store.set_item_status(item_id, "failed", error=f"{retries} retries spent; {last}")
    logger.warning("item %s failed: %d retries spent (tried again at the next start)",
                   item_id, retries)  # fmt: skip


def withdraw_item(runtime: Runtime, item_id: str) -> ItemRecord:
    """Take the item out of every recommendation now; its row stays (``withdrawn_at``).

    The store is marked first, then the point deleted; a warm-up writing the item's vector
    meanwhile reads the mark after its write (:func:`index_item`), so either order ends
    with no point.

    Raises:
        UnknownIds: no such item.
    """
    item = runtime.store.withdraw_item(item_id)
    if item.index is not None:
        runtime.index.delete("items", [item.index])
    return item


def index_item(runtime: Runtime, item: ItemRecord, index: int, vector: np.ndarray) -> None:
    """Write the posted item's served vector, unless it was withdrawn (checked after the
    write, so a withdrawal that came in between still wins)."""
    runtime.index.upsert("items", [index], vector, [item_payload(True, item.categories)])
    current = runtime.store.get_item(item.id)
    if current is None or current.withdrawn_at is not None:
        runtime.index.delete("items", [index])


def write_content_vector(
    runtime: Runtime, release: ModelRelease, item: ItemRecord, content: np.ndarray
) -> int:
    """Index the item by its content vector alone (the collaborative content map): it is
    recommendable from this moment on. Returns its row index (assigned on first use)."""
    index = item.index if item.index is not None else runtime.store.assign_index(item.id)
    index_item(runtime, item, index, release.warmer.content_vectors(content))
    return index


def show_by_content(runtime: Runtime, item_ids: Sequence[str]) -> bool:
    """At acceptance: the items' content vectors in the index before their warm-ups are
    dequeued (in a burst that can take minutes); their texts are embedded together. Best
    effort: where it cannot (no model version active yet, the index unreachable) each
    warm-up writes its own; the items are stored either way.
    """
    try:
        release = runtime.release()
        items = [runtime.store.get_item(item_id) for item_id in item_ids]
        content = runtime.embed([item.text for item in items])
        for item, vector in zip(items, content, strict=True):
            write_content_vector(runtime, release, item, vector[None, :])
    except Exception as error:  # logged, never the client's failure: the items are stored
        logger.warning("items %s: content vectors left to their warm-ups (%s: %s)",
                       ", ".join(item_ids[:5]), type(error).__name__, error)  # fmt: skip
        return False
    return True


def warm_up_item(runtime: Runtime, item_id: str, job_id: str | None = None) -> dict:
    """Make ``item_id`` warm; returns what its job records (users, timings, version).

    On failure the item keeps its content vector in the index (it stays recommendable),
    is marked ``degraded`` with the error, and the exception propagates so the caller can
    retry.
    """
    store = runtime.store
    item = store.get_item(item_id)
    if item is None:
        raise LookupError(f"item {item_id!r} is not in the store")
    release = runtime.release()
    skipped = None
    if item.withdrawn_at is not None:
        skipped = {"status": item.status, "skipped": "withdrawn"}
    elif item.status == "warm" and item.model_version == release.version:
        skipped = {"status": "warm", "skipped": "already warm"}
    if skipped is not None:
        result = {"item_id": item_id, **skipped}
        if job_id:
            store.finish_job(job_id, "succeeded", result=result)
        return result
    if job_id:
        store.start_job(job_id)
    timer = StageTimer()
    clock = timer.stage
    timings = timer.seconds
    try:
        with clock("embed"):
            content = runtime.embed([item.text])
        with clock("content vector"):
            # Written at POST already, unless that failed or another version was active.
            index = write_content_vector(runtime, release, item, content)
        store.set_item_status(item_id, "warming")
        with clock("filter and refine"):
            warmed = release.warmer.warm(
                content,
                [item.text],
                runtime.simulator_for(release),
                runtime.candidate_source(release),
            )
        users = release.simulated_users(warmed, 0)
        with clock("store"):
            store.replace_simulated(item_id, users, release.version, release.evidence(warmed, 0))
            index_item(runtime, item, index, warmed.vectors)
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        logger.exception("warm-up of item %s failed", item_id)
        store.set_item_status(item_id, "degraded", error=message, text_hash=item.content_hash)
        if job_id:
            store.finish_job(job_id, "failed", error=message)
        raise
    current = store.set_item_status(
        item_id,
        "warm",
        model_version=release.version,
        timings=timings,
        error=None,
        text_hash=item.content_hash,
    )
    result = {
        "item_id": item_id,
        "status": "warm" if current else "queued",
        "model_version": release.version,
        "simulated_users": len(users),
        "timings": timings,
    }
    if not current:  # PATCHed meanwhile: the job queued with the new text warms it
        result["skipped"] = "text changed during the warm-up"
    if job_id:
        store.finish_job(job_id, "succeeded", result=result)
    logger.info(
        "item %s warm: %d simulated users in %.3f s",
        item_id,
        len(users),
        sum(timings.values()),
    )
    return result
