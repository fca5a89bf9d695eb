"""What the dashboard's pages show, gathered from the store, the index and the model version.

The pages (:mod:`services.api.routes.dashboard`) render these dictionaries and nothing
else, so each page's content is testable without a browser. Charts are Plotly figures as
JSON, drawn in the page by the Plotly library the service ships (no CDN).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from models.llmins.online import LM_EVIDENCE
from services.index import PointQuery
from services.runtime import Runtime
from services.store import ItemRecord, JobRecord

#: Over what the overview's warm-up chart reaches (the API keeps an hour of latencies).
WINDOW = timedelta(hours=1)
#: Warm items drawn for an item's map (a uniform sample: the projection is of them).
MAP_SAMPLE = 1500
#: How deep a simulated user's list is searched for the item's rank.
RANK_DEPTH = 100
POOLS = {"all": None, "warm": False, "cold": True}


def overview(runtime: Runtime, served: list[tuple[float, float]]) -> dict:
    """The active version and its manifest, counts, the warm-up queue, the last hour's
    warm-up latencies and ``served`` recommendations' ((end time, seconds) pairs), the
    last refreshes and trainings."""
    store = runtime.store
    active = store.active_version()
    manifest = _manifest(active.path) if active is not None else None
    counts = store.counts()
    jobs = store.job_counts()
    since = datetime.now(UTC) - WINDOW
    warm_ups = store.recent_jobs(["warm_up"], "succeeded", limit=10_000, finished_since=since)
    waits = [(job.finished_at - job.created_at).total_seconds() for job in warm_ups]
    return {
        "version": None if active is None else asdict(active),
        "manifest": manifest,
        "choices": _choices(manifest) if manifest else {},
        "counts": counts,
        "origins": store.item_origins(),
        "queue": {
            status: jobs.get("warm_up", {}).get(status, 0) for status in ("queued", "running")
        },
        "failed_warm_ups": jobs.get("warm_up", {}).get("failed", 0),
        "warm_up_chart": _latency_chart(
            [job.finished_at for job in warm_ups], waits, "warm-up: posted to warm (s)"
        ),
        "warm_up_summary": _summary(waits),
        "recommendation_chart": _latency_chart(
            [datetime.fromtimestamp(at, UTC) for at, _ in served],
            [seconds * 1000 for _, seconds in served],
            "recommendations: server time (ms)",
        ),
        "recommendation_summary": _summary([seconds * 1000 for _, seconds in served]),
        "model_jobs": store.recent_jobs(["refresh", "train"], limit=10),
    }


def search(runtime: Runtime, query: str | None, limit: int = 50) -> list[ItemRecord]:
    return runtime.store.search_items(query.strip() if query else None, limit)


def item_view(runtime: Runtime, item_id: str) -> dict | None:
    """One item: its record and latest job, its simulated users with why each was kept and
    where the item ranks in their lists, its nearest items, and a map of it among the warm
    items (None: no such item)."""
    store = runtime.store
    record = store.get_item(item_id)
    if record is None:
        return None
    simulated = store.simulated_detail(item_id)
    names = sorted({name for _, _, why in simulated for name in (why or {})}, key=_evidence_order)
    vector = _vector_of(runtime, record)
    ranks = _ranks(runtime, record, [user for user, _, _ in simulated])
    neighbours: list[tuple[ItemRecord, float]] = []
    if vector is not None and record.withdrawn_at is None:
        hits = runtime.index.top("items", vector, 10, [record.index])
        neighbours = _records(runtime, hits)
    return {
        "item": record,
        "job": store.latest_job(item_id),
        "evidence_names": names,
        "simulated": [
            {"user_id": user, "score": p, "evidence": why or {}, "rank": ranks.get(user)}
            for user, p, why in simulated
        ],
        "rank_depth": RANK_DEPTH,
        "neighbours": neighbours,
        "map": None if vector is None else _map(runtime, record, vector, neighbours),
    }


def user_view(runtime: Runtime, user_id: str, k: int = 10) -> dict | None:
    """One user: their history and their top ``k`` in each pool (None: unknown user)."""
    store = runtime.store
    summary = store.user_summary(user_id)
    if summary is None:
        return None
    row, interactions = summary
    seen_rows = store.seen_item_indices(user_id)
    history = store.get_items(sorted(store.seen_item_ids(user_id)))
    lists: dict[str, list[tuple[ItemRecord, float]]] = {}
    vector_source = None
    if runtime.index.active_version("items") is not None:
        if row is not None:
            queries = [PointQuery(row, k, seen_rows, cold) for cold in POOLS.values()]
            answered = runtime.index.top_for("items", "users", queries)
            hits = answered[0] if answered else [[] for _ in POOLS]
            vector_source = "model"
        elif seen_rows:
            try:
                vector = runtime.fold_in_user(seen_rows)
            except KeyError:  # an item of theirs has no vector yet
                vector = None
            if vector is not None:
                hits = [runtime.index.top("items", vector, k, seen_rows, c) for c in POOLS.values()]
                vector_source = "folded_in"
        if vector_source is not None:
            lists = {
                pool: _records(runtime, ranked) for pool, ranked in zip(POOLS, hits, strict=True)
            }
    return {
        "user_id": user_id,
        "interactions": interactions,
        "vector_source": vector_source,
        "history": sorted(history.values(), key=lambda item: item.id),
        "lists": lists,
    }


def jobs_view(runtime: Runtime, kind: str | None, status: str | None, limit: int = 100) -> dict:
    jobs = runtime.store.recent_jobs([kind] if kind else None, status, limit)
    return {"jobs": jobs, "kind": kind, "status": status, "counts": runtime.store.job_counts()}


def job_seconds(job: JobRecord) -> float | None:
    """From its start to its end (None while it runs)."""
    if job.started_at is None or job.finished_at is None:
        return None
    return (job.finished_at - job.started_at).total_seconds()


#: The result fields a job's one-line summary shows, in this order.
BRIEF_FIELDS = ("status", "skipped", "by", "version", "model_version", "simulated_users")


def job_brief(job: JobRecord) -> str:
    """A job's result in one line (the whole record is one click away on the page)."""
    result = job.result or {}
    return " · ".join(f"{name} {result[name]}" for name in BRIEF_FIELDS if name in result)


def _records(runtime: Runtime, hits: list[tuple[int, float]]) -> list[tuple[ItemRecord, float]]:
    """Ranked (row, score) pairs as (item record, score), rows without an item left out."""
    rows = runtime.store.item_ids([row for row, _ in hits])
    found = runtime.store.get_items(list(rows.values()))
    return [(found[rows[row]], score) for row, score in hits if rows.get(row) in found]


def _manifest(path: str) -> dict | None:
    file = Path(path) / "manifest.json"
    return json.loads(file.read_text()) if file.exists() else None


def _choices(manifest: dict) -> dict[str, Any]:
    """The manifest's lines an operator asks about first."""
    warmer = manifest.get("warmer", {})
    update = warmer.get("online_update", {})
    return {
        "data set": manifest.get("data", {}).get("name"),
        "data fingerprint": manifest.get("data", {}).get("fingerprint"),
        "backbone": manifest.get("backbone", {}).get("name"),
        "filter signals": ", ".join(warmer.get("signals", [])) or None,
        "simulated users per item": update.get("keep"),
        "LM asked": warmer.get("lm_used"),
        "refreshed from": manifest.get("refresh", {}).get("from"),
        "trained at": manifest.get("created_at"),
    }


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50": float(p50), "p95": float(p95)}


def _latency_chart(times: list[datetime], values: list[float], title: str) -> str:
    figure = go.Figure(go.Scattergl(x=times, y=values, mode="markers", marker={"size": 5}))
    figure.update_layout(
        title=title, height=280, margin={"l": 50, "r": 10, "t": 40, "b": 40}, showlegend=False
    )
    return figure.to_json()


def _evidence_order(name: str) -> tuple[int, str]:
    """Filter signals first, then the filter's summary, the LM's answer last."""
    rank = {"history length": 1, "merged": 2, LM_EVIDENCE: 3}
    return rank.get(name, 0), name


def _vector_of(runtime: Runtime, record: ItemRecord) -> np.ndarray | None:
    if record.index is None:
        return None
    try:
        return runtime.index.vectors("items", [record.index])[0]
    except KeyError:  # withdrawn, or not written yet
        return None


def _ranks(runtime: Runtime, record: ItemRecord, users: list[str]) -> dict[str, int | None]:
    """Where the item stands in each user's recommendations (their seen items left out, as
    the API ranks): its 1-based rank, or None beyond :data:`RANK_DEPTH`."""
    store = runtime.store
    if record.index is None or record.withdrawn_at is not None or not users:
        return {}
    rows = {user: store.user_index(user) for user in users}
    ranked = [user for user in users if rows[user] is not None]
    queries = [PointQuery(rows[u], RANK_DEPTH, store.seen_item_indices(u)) for u in ranked]
    answered = runtime.index.top_for("items", "users", queries) if queries else None
    ranks: dict[str, int | None] = dict.fromkeys(users)
    for user, hits in zip(ranked, answered[0] if answered else [], strict=False):
        positions = [position for position, (row, _) in enumerate(hits) if row == record.index]
        ranks[user] = positions[0] + 1 if positions else None
    return ranks


def _map(
    runtime: Runtime,
    record: ItemRecord,
    vector: np.ndarray,
    neighbours: list[tuple[ItemRecord, float]],
) -> str:
    """The item, its neighbours and a sample of the warm items on the first two principal
    axes of that sample (the paper's Figure 1 view: does the item sit among warm items?)."""
    catalogue = runtime.store.indexed_items()
    gone = runtime.store.withdrawn_indices()
    warm = np.array(
        [row for row, (_, origin) in catalogue.items() if origin == "dataset" and row not in gone],
        dtype=np.int64,
    )
    rng = np.random.default_rng(0)
    sample = (
        np.sort(rng.choice(warm, min(MAP_SAMPLE, len(warm)), replace=False)) if len(warm) else warm
    )
    vectors = (
        runtime.index.vectors("items", sample.tolist())
        if len(sample)
        else np.zeros((0, len(vector)))
    )
    near = [item for item, _ in neighbours if item.index is not None]
    near_vectors = runtime.index.vectors("items", [item.index for item in near]) if near else None
    if len(vectors) >= 2:
        centre = vectors.mean(0)
        axes = np.linalg.svd(vectors - centre, full_matrices=False)[2][:2]
    else:
        centre, axes = np.zeros_like(vector), np.eye(2, len(vector))

    def project(rows: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(rows) - centre) @ axes.T

    figure = go.Figure()
    if len(vectors):
        points = project(vectors)
        figure.add_trace(
            go.Scattergl(
                x=points[:, 0],
                y=points[:, 1],
                mode="markers",
                name="warm items (sample)",
                marker={"size": 4, "color": "#b0b7c3"},
                text=[catalogue[int(row)][0] for row in sample],
                hoverinfo="text",
            )
        )
    if near_vectors is not None:
        points = project(near_vectors)
        figure.add_trace(
            go.Scatter(
                x=points[:, 0],
                y=points[:, 1],
                mode="markers",
                name="nearest items",
                marker={"size": 8, "color": "#2b6cb0"},
                text=[item.id for item in near],
                hoverinfo="text",
            )
        )
    point = project(vector)
    figure.add_trace(
        go.Scatter(
            x=point[:, 0],
            y=point[:, 1],
            mode="markers",
            name=record.id,
            marker={"size": 14, "color": "#d64545", "symbol": "star"},
            text=[record.id],
            hoverinfo="text",
        )
    )
    figure.update_layout(
        title="the item among the warm items (first two principal axes of the sample)",
        height=420,
        margin={"l": 40, "r": 10, "t": 40, "b": 30},
    )
    return figure.to_json()
