"""A service started with no data set (``LLMINS_DATASET=none``): it takes items and
interactions before any model version exists and answers recommendations from the popular
fallback, labelled as such."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.jobs import requeue_pending
from services.store import NewItem


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
    refresh = client.post("/v1/admin/refresh").json()
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while client.get(f"/v1/jobs/{refresh['id']}").json()["status"] != "failed":
        assert datetime.now(UTC) < deadline, "the refresh job did not end"
    assert "no model version is active" in client.get(f"/v1/jobs/{refresh['id']}").json()["error"]


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
