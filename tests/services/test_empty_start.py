"""A service started with no data set (``LLMINS_DATASET=none``): it takes items and
interactions before any model version exists and answers recommendations from the popular
fallback, labelled as such."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import train_from_store
from services.jobs import requeue_pending
from services.queues import InProcessQueue
from services.runtime import Runtime
from services.settings import NO_DATASET, Settings
from services.store import NewItem
from tests.factories import bag_of_words, planted_dataset
from tests.services.test_api import wait_until_idle


def test_it_is_ready_and_holds_posted_items_for_the_first_model_version(empty_service) -> None:
    client, runtime, queue = empty_service
    assert client.get("/readyz").json() == {
        "status": "ready",
        "model_version": None,
        "fallback": "popular",
    }
    items = [{"id": f"e{n}", "text": f"item number {n}"} for n in range(4)]
    response = client.post("/v1/items", json=items)
    assert response.status_code == 202, response.text
    assert queue.idle()  # nothing was enqueued: no model could warm them
    assert client.get("/v1/items/e0").json()["status"] == "queued"
    assert requeue_pending(runtime, queue) == 0  # they wait for the first version
    assert client.get("/v1/items/e0/neighbors").status_code == 409
    assert client.patch("/v1/items/e3", json={"text": "new text"}).status_code == 202
    # The periodic refresh of an empty service trains the first version once there is
    # enough data; until then its job succeeds, saying why it skipped.
    refresh = wait_for_job(client, client.post("/v1/admin/refresh").json()["id"])
    assert refresh["status"] == "succeeded"
    assert "training needs" in refresh["result"]["skipped"]


def test_recommendations_fall_back_to_popular_then_newest_items(empty_service) -> None:
    client, runtime, _ = empty_service
    old = datetime.now(UTC) - timedelta(days=400)
    runtime.store.submit_items(
        [
            NewItem("p-popular", "read by three", ("news",)),
            NewItem("p-second", "read by two"),
            NewItem("p-old", "read long ago by many", published_at=old),
            NewItem("p-newest", "read by none yet"),
        ]
    )
    recent = [("r1", "p-popular"), ("r2", "p-popular"), ("r3", "p-popular")]
    recent += [("r1", "p-second"), ("r2", "p-second")]
    with runtime.store.batch() as batch:
        batch.add_interactions([(u, i, None) for u, i in recent])
        batch.add_interactions([(f"old{n}", "p-old", old) for n in range(5)])
    runtime.fallback._ranking = None  # what another process would see after its TTL

    body = client.get("/v1/users/r3/recommendations", params={"k": 4}).json()
    assert (body["fallback"], body["user_vector"], body["model_version"]) == (
        "popular",
        None,
        None,
    )
    listed = [(r["item_id"], r["score"]) for r in body["items"]]
    # r3's own item left out; interactions older than the window do not count; then the
    # newest items (published or recorded), 0 interactions in the window.
    assert listed[0] == ("p-second", 2.0)
    assert [item for item, _ in listed[1:]] == ["p-newest", "e0", "e1"]  # e*: one batch, by id
    assert all(score == 0.0 for _, score in listed[1:])
    assert "p-old" not in [item for item, _ in listed]

    stranger = client.get("/v1/users/nobody-yet/recommendations", params={"k": 2}).json()
    assert stranger["fallback"] == "popular"
    assert [r["item_id"] for r in stranger["items"]] == ["p-popular", "p-second"]
    news = client.get("/v1/users/r1/recommendations", params={"category": "news"}).json()
    assert news["items"] == []  # r1's one news item is theirs already
    news = client.get("/v1/users/nobody-yet/recommendations", params={"category": "news"})
    assert [r["item_id"] for r in news.json()["items"]] == ["p-popular"]
    warm = client.get("/v1/users/nobody-yet/recommendations", params={"pool": "warm"}).json()
    assert warm["items"] == []  # no item was trained from interactions yet

    assert client.delete("/v1/items/p-popular").status_code == 200
    runtime.fallback._ranking = None
    after = client.get("/v1/users/nobody-yet/recommendations", params={"k": 1}).json()
    assert after["items"][0]["item_id"] == "p-second"
    user = client.get("/v1/users/r1").json()
    assert (user["interactions"], user["user_vector"], user["model_version"]) == (2, None, None)


@pytest.fixture
def fresh_empty(tmp_path):
    """A service started empty, trainable from 500 interactions with 20 items."""
    settings = Settings(
        state_dir=tmp_path, dataset=NO_DATASET, train_min_interactions=500, train_min_items=20
    )
    runtime = Runtime(settings, embedder=bag_of_words)
    queue = InProcessQueue(runtime)
    with TestClient(create_app(runtime, queue)) as client:
        yield client, runtime, queue
    queue.close()
    runtime.close()


def wait_for_job(client, job_id: str, seconds: float = 60.0) -> dict:
    deadline = time.monotonic() + seconds
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job_id} did not end"
        time.sleep(0.05)
    return job


def test_the_first_version_is_trained_from_what_the_service_received(fresh_empty) -> None:
    client, runtime, queue = fresh_empty
    store = runtime.store
    data = planted_dataset()
    short = wait_for_job(client, client.post("/v1/admin/train").json()["id"])
    assert short["status"] == "failed"
    assert "0 real interactions" in short["error"] and "needs 500" in short["error"]

    later = {int(item) for item in data.cold_test_items[:3]}
    catalogue = [
        {"id": f"m{item}", "text": data.item_texts[item]}
        for item in range(data.n_items)
        if item not in later
    ]
    for start in range(0, len(catalogue), 1000):
        assert client.post("/v1/items", json=catalogue[start : start + 1000]).status_code == 202
    seen = np.concatenate([data.splits[part] for part in ("warm_train", "warm_val", "cold_val")])
    pairs = [{"user_id": f"u{u}", "item_id": f"m{i}"} for u, i in seen.tolist()]
    for start in range(0, len(pairs), 10_000):
        sent = client.post("/v1/interactions", json={"interactions": pairs[start : start + 10_000]})
        assert sent.status_code == 200, sent.text
    before = client.get("/v1/users/u3/recommendations").json()
    assert before["fallback"] == "popular"

    version = train_from_store(runtime, max_epochs=20, progress=False)

    assert store.active_version().id == version
    assert set(store.counts()["items"]) == {"warm"}  # learned, or warmed by the new version
    # Every warm-up queued before any model is done: learned or warmed by the switch.
    assert {store.latest_job(item["id"]).status for item in catalogue} == {"succeeded"}
    mine = client.get("/v1/users/u3/recommendations", params={"k": 20}).json()
    assert (mine["user_vector"], mine["fallback"], mine["model_version"]) == (
        "model",
        None,
        version,
    )
    own = {f"m{i}" for u, i in seen.tolist() if u == 3}
    assert len(mine["items"]) == 20 and not own & {r["item_id"] for r in mine["items"]}

    # A new item now warms with the trained version: its simulated users are the store's
    # users (their own ids), mostly its real ones.
    item = min(later)
    response = client.post("/v1/items", json={"id": "late", "text": data.item_texts[item]})
    assert response.status_code == 202
    wait_until_idle(queue)
    body = client.get("/v1/items/late").json()
    assert body["status"] == "warm" and body["model_version"] == version
    truth = {f"u{u}" for u, i in data.splits["cold_test"].tolist() if i == item}
    simulated = {user["user_id"] for user in body["simulated_users"]}
    assert simulated <= {f"u{u}" for u in range(data.n_users)}
    assert len(truth & simulated) >= 5
    listed = client.get(
        f"/v1/users/{body['simulated_users'][0]['user_id']}/recommendations",
        params={"pool": "cold", "k": 10},
    ).json()
    assert "late" in [r["item_id"] for r in listed["items"]]
