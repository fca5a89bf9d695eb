"""The REST API over a real store and index, with a model trained on the planted data set.

The API runs in process (FastAPI's TestClient) with the embedded mode's background thread;
content vectors are word counts, so no language model is loaded.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from models.llmins.update import RIDGE_GRID, fold_in, ridge_inverse
from services.api.app import create_app
from services.bootstrap import retrain
from services.jobs import recover_after_restart, requeue_pending
from services.queues import InProcessQueue
from services.refresh import refresh
from services.runtime import Runtime
from services.settings import Settings
from services.simulator.process import free_port
from services.warmup import index_item, warm_up_item
from tests.factories import (
    bag_of_words,
    install_lm_version,
    kept_per_item,
    planted_dataset,
    prompts_scored,
)


def wait_until_idle(queue: InProcessQueue, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not queue.idle():
        if time.monotonic() > deadline:
            raise TimeoutError("the warm-up queue did not drain")
        time.sleep(0.02)


def something_new(client, runtime, user: str = "0") -> None:
    """A real interaction the active version has not seen, so that a refresh runs (one
    with nothing new is skipped)."""
    seen = set(runtime.store.seen_item_indices(user))
    item = next(int(i) for i in planted_dataset().warm_items if int(i) not in seen)
    sent = {"interactions": [{"user_id": user, "item_id": str(item)}]}
    assert client.post("/v1/interactions", json=sent).json()["new"] == 1


def post_cold_item(client, queue, item: int, suffix: str = "") -> dict:
    data = planted_dataset()
    response = client.post(
        "/v1/items", json={"id": f"new-{item}{suffix}", "text": data.item_texts[item]}
    )
    assert response.status_code == 202, response.text
    wait_until_idle(queue)
    return response.json()


def test_a_posted_item_warms_and_is_recommended_to_its_simulated_users(service) -> None:
    client, _, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[0])
    accepted = post_cold_item(client, queue, item)
    assert accepted["status"] == "queued" and accepted["job_id"]
    body = client.get(f"/v1/items/new-{item}").json()
    assert body["status"] == "warm", body
    users = body["simulated_users"]
    _, runtime, _ = service
    assert len(users) == kept_per_item(runtime.store.active_version().path)
    assert [u["score"] for u in users] == sorted((u["score"] for u in users), reverse=True)
    assert {u["source"] for u in users} == {"refiner"}  # the default version asks no LM
    # Each user's why: the filter's signals, history length and merged score, no LM.
    release = runtime.release()
    names = {*release.warmer.signals, "history length", "merged"}
    assert all(set(u["evidence"]) == names for u in users)
    merged = [u["evidence"]["merged"] for u in users]
    assert all(isinstance(value, float) for value in merged) and len(set(merged)) > 1
    assert set(body["timings"]) >= {"embed", "filter and refine"}
    # The simulated users are mostly real ones of the planted topic (held out from training).
    truth = {str(u) for u, i in data.splits["cold_test"].tolist() if i == item}
    assert len(truth & {u["user_id"] for u in users}) >= 5
    job = client.get(f"/v1/jobs/{accepted['job_id']}").json()
    assert job["status"] == "succeeded" and job["attempts"] == 1
    recommended = client.get(
        f"/v1/users/{users[0]['user_id']}/recommendations", params={"pool": "cold", "k": 5}
    ).json()
    assert f"new-{item}" in [r["item_id"] for r in recommended["items"]]
    warm_only = client.get(
        f"/v1/users/{users[0]['user_id']}/recommendations", params={"pool": "warm", "k": 100}
    ).json()
    assert f"new-{item}" not in [r["item_id"] for r in warm_only["items"]]


def test_posting_is_idempotent_on_the_id(service) -> None:
    client, _, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[1])
    first = post_cold_item(client, queue, item)
    again = client.post("/v1/items", json={"id": f"new-{item}", "text": data.item_texts[item]})
    assert again.status_code == 200 and again.json()["job_id"] == first["job_id"]
    other = client.post("/v1/items", json={"id": f"new-{item}", "text": "something else"})
    assert other.status_code == 409 and "new-" in other.json()["detail"]


def test_recommendations_leave_out_what_the_user_interacted_with(service) -> None:
    client, _, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[2])
    post_cold_item(client, queue, item)
    user = client.get(f"/v1/items/new-{item}").json()["simulated_users"][0]["user_id"]
    before = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"}).json()
    assert f"new-{item}" in [r["item_id"] for r in before["items"]]
    sent = {"interactions": [{"user_id": user, "item_id": f"new-{item}"}]}
    assert client.post("/v1/interactions", json=sent).json() == {"received": 1, "new": 1}
    assert client.post("/v1/interactions", json=sent).json() == {"received": 1, "new": 0}
    after = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"}).json()
    assert f"new-{item}" not in [r["item_id"] for r in after["items"]]
    scores = [r["score"] for r in after["items"]]
    assert scores == sorted(scores, reverse=True)


def test_a_user_the_model_never_saw_is_recommended_from_a_folded_in_vector(service) -> None:
    """A newcomer with user 3's training history: their first interactions add them, their
    vector is fitted to those items' vectors at once, their own items left out."""
    client, runtime, _ = service
    data = planted_dataset()
    twin = 3
    history = sorted({i for u, i in data.splits["warm_train"].tolist() if u == twin})
    assert client.get("/v1/users/newcomer").status_code == 404
    before = client.get("/v1/users/newcomer/recommendations", params={"pool": "warm"}).json()
    assert (before["user_vector"], before["fallback"]) == (None, "popular")
    sent = {"interactions": [{"user_id": "newcomer", "item_id": str(i)} for i in history]}
    assert client.post("/v1/interactions", json=sent).json()["new"] == len(history)
    user = client.get("/v1/users/newcomer").json()
    assert (user["interactions"], user["user_vector"]) == (len(history), "folded_in")
    assert client.get(f"/v1/users/{twin}").json()["user_vector"] == "model"
    params = {"pool": "warm", "k": 20}
    folded = client.get("/v1/users/newcomer/recommendations", params=params).json()
    assert folded["user_vector"] == "folded_in" and len(folded["items"]) == 20
    assert folded["fallback"] is None
    listed = [int(r["item_id"]) for r in folded["items"]]
    assert not set(listed) & set(history)
    # Exactly the ridge fit against the served item vectors, ranked by inner product.
    release = runtime.release()
    vector = fold_in(
        runtime.index.vectors("items", history),
        ridge_inverse(np.asarray(release.items), release.fold_in_ridge),
    )
    scores = np.asarray(release.items) @ vector
    np.testing.assert_allclose([r["score"] for r in folded["items"]], scores[listed], rtol=1e-4)
    assert client.get(f"/v1/users/{twin}/recommendations").json()["user_vector"] == "model"
    # The ridge was chosen on validation, every user folded in from their training items.
    chosen = release.manifest["fold_in"]
    scores = chosen["val_warm_ndcg_by_ridge"]
    assert chosen["ridge"] == max(RIDGE_GRID, key=lambda r: scores[str(r)])


def test_neighbors_are_the_items_nearest_to_an_items_vector(service) -> None:
    client, runtime, _ = service
    items = np.asarray(runtime.release().items)
    warm = [int(i) for i in planted_dataset().warm_items]
    item = warm[0]
    answer = client.get(f"/v1/items/{item}/neighbors", params={"k": 5, "pool": "warm"}).json()
    listed = [int(r["item_id"]) for r in answer["items"]]
    others = [i for i in warm if i != item]
    assert listed == sorted(others, key=lambda i: -float(items[i] @ items[item]))[:5]
    assert client.get("/v1/items/nope/neighbors").status_code == 404


def test_unknown_ids_are_404s_and_change_nothing(service) -> None:
    client, runtime, _ = service
    before = runtime.store.counts()
    response = client.post(
        "/v1/interactions",
        json={
            "interactions": [{"user_id": "0", "item_id": "1"}, {"user_id": "0", "item_id": "nope"}]
        },
    )
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert runtime.store.counts() == before
    assert client.get("/v1/items/nope").status_code == 404
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get("/v1/users/nobody").status_code == 404
    # Recommendations for a user never seen: the popular fallback, labelled (not a 404).
    assert client.get("/v1/users/nobody/recommendations").json()["fallback"] == "popular"


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("post", "/v1/items", {"id": "a b", "text": "spaces are not allowed in ids"}),
        ("post", "/v1/items", {"id": "x", "text": ""}),
        ("post", "/v1/items", {"id": "x", "text": "t" * 10_001}),
        ("post", "/v1/items", {"id": "x", "text": "t", "extra": 1}),
        ("post", "/v1/items", {"text": "no id"}),
        ("post", "/v1/items", []),
        ("post", "/v1/items", [{"id": "x", "text": "fine"}, {"id": "y"}]),
        ("post", "/v1/items", [{"id": f"x{n}", "text": "t"} for n in range(1001)]),
        ("post", "/v1/interactions", {"interactions": []}),
        ("get", "/v1/users/0/recommendations?k=0", None),
        ("get", "/v1/users/0/recommendations?k=101", None),
        ("get", "/v1/users/0/recommendations?pool=hot", None),
    ],
)
def test_bad_input_is_a_422_with_a_reason(service, method, path, payload) -> None:
    client = service[0]
    response = client.request(method, path, json=payload)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_health_readiness_and_metrics(service) -> None:
    client = service[0]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.get("/v1/users/0/recommendations")
    metrics = client.get("/metrics").text
    assert (
        'llmins_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations"'
        in metrics
    )


def test_a_refresh_with_nothing_new_is_skipped(service) -> None:
    client, runtime, queue = service
    something_new(client, runtime)
    first = refresh(runtime, max_epochs=1)
    assert "skipped" not in first and runtime.store.active_version().id == first["version"]
    again = refresh(runtime, max_epochs=1)
    assert again["version"] == first["version"] and "nothing changed" in again["skipped"]
    assert runtime.store.active_version().id == first["version"]
    job = client.post("/v1/admin/refresh").json()["id"]
    wait_until_idle(queue, 120)
    record = client.get(f"/v1/jobs/{job}").json()
    assert record["status"] == "succeeded" and "nothing changed" in record["result"]["skipped"]


def test_a_refresh_swaps_the_model_and_keeps_serving(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[3])
    post_cold_item(client, queue, item)
    before = runtime.store.active_version().id
    job = client.post("/v1/admin/refresh")
    assert job.status_code == 202
    wait_until_idle(queue, 120)
    done = client.get(f"/v1/jobs/{job.json()['id']}").json()
    assert done["status"] == "succeeded", done
    assert runtime.store.active_version().id != before
    assert runtime.index.active_version("items") == runtime.store.active_version().id
    user = client.get(f"/v1/items/new-{item}").json()["simulated_users"][0]["user_id"]
    items = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"}).json()
    assert f"new-{item}" in [r["item_id"] for r in items["items"]]


def test_a_refresh_reads_only_the_texts_of_items_indexed_since(service, monkeypatch) -> None:
    """The version holds every earlier row's content vector and asks no LM, so the
    catalogue's texts stay in the store; the posted item's text is read and embedded."""
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[4])
    post_cold_item(client, queue, item, suffix="-texts")
    rows = len(runtime.release().items)
    snapshots = []
    snapshot = runtime.store.training_snapshot

    def recorded(*args, **kwargs):
        snapshots.append(snapshot(*args, **kwargs))
        return snapshots[-1]

    monkeypatch.setattr(runtime.store, "training_snapshot", recorded)
    record = refresh(runtime, max_epochs=1)

    assert "skipped" not in record
    assert runtime.release().warmer.prompts is None
    (texts,) = [taken.item_texts for taken in snapshots]
    assert texts[:rows] == [None] * rows
    posted = runtime.store.get_item(f"new-{item}-texts")
    assert texts[posted.index] == data.item_texts[item]
    content = runtime.release(tables=True).warmer.history.content
    np.testing.assert_allclose(
        content[posted.index], runtime.embed_all([data.item_texts[item]])[0], rtol=1e-4, atol=1e-6
    )


def test_a_posted_item_with_enough_real_users_graduates_at_the_refresh(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[0])
    post_cold_item(client, queue, item, suffix="-graduate")
    name = f"new-{item}-graduate"
    keep = kept_per_item(runtime.store.active_version().path)
    readers = [{"user_id": str(user), "item_id": name} for user in range(keep)]
    assert client.post("/v1/interactions", json={"interactions": readers}).json()["new"] == keep

    record = refresh(runtime, max_epochs=1)

    assert record["graduated"] == [name]
    graduated = runtime.store.get_item(name)
    assert (graduated.origin, graduated.status, graduated.model_version) == (
        "dataset",
        "warm",
        record["version"],
    )
    assert runtime.store.simulated_for(name) == []
    vector = runtime.index.vectors("items", [graduated.index])[0]
    np.testing.assert_allclose(vector, runtime.release().items[graduated.index], rtol=1e-5)
    warm = runtime.index.top("items", vector, 300, cold=False)
    cold = runtime.index.top("items", vector, 300, cold=True)
    assert graduated.index in [row for row, _ in warm]
    assert graduated.index not in [row for row, _ in cold]


def test_a_refresh_gives_arrived_users_rows_and_histories_the_next_item_reads(service) -> None:
    """A user outside the model reads a posted item (and user 5's training history): the
    refresh trains them as the model's user, and a later item like the one they read
    finds them among its candidate users, through the index's user profiles."""
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[6])
    post_cold_item(client, queue, item, suffix="-read")
    history = sorted({str(i) for u, i in data.splits["warm_train"].tolist() if u == 5})
    read = [*history, f"new-{item}-read"]
    sent = {"interactions": [{"user_id": "arrived", "item_id": i} for i in read]}
    assert client.post("/v1/interactions", json=sent).json()["new"] == len(read)
    assert client.get("/v1/users/arrived").json()["user_vector"] == "folded_in"

    record = refresh(runtime, max_epochs=1)

    assert record["new_users"] == 1
    user = client.get("/v1/users/arrived").json()
    assert (user["user_vector"], user["model_version"]) == ("model", record["version"])
    ranked = client.get("/v1/users/arrived/recommendations").json()
    assert ranked["user_vector"] == "model" and len(ranked["items"]) == 20
    row = runtime.store.user_index("arrived")
    release = runtime.release()
    assert release.user_ids[row] == "arrived"
    source = runtime.candidate_source(release)
    assert source is not None  # the profiles in the index, not a scan of tables in memory
    text = data.item_texts[item]
    warmed = release.warmer.warm(runtime.embed([text]), [text], source=source)
    assert row in warmed.candidates[0]


def test_retraining_rewarms_posted_items_in_the_new_space(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[5])
    post_cold_item(client, queue, item)
    before = runtime.store.active_version().id
    count = runtime.index.count("items")
    version = retrain(runtime, data, bag_of_words(data.item_texts), max_epochs=10, progress=False)
    assert version != before and runtime.index.active_version("items") == version
    assert runtime.index.count("items") == count
    body = client.get(f"/v1/items/new-{item}").json()
    assert body["model_version"] == version and body["status"] == "warm"
    user = body["simulated_users"][0]["user_id"]
    items = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"}).json()
    assert f"new-{item}" in [r["item_id"] for r in items["items"]]


def test_new_text_warms_an_item_again_for_the_users_of_the_new_text(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    first, second = (int(i) for i in data.cold_test_items[7:9])
    accepted = post_cold_item(client, queue, first, suffix="-patched")
    name = f"new-{first}-patched"
    patched = client.patch(f"/v1/items/{name}", json={"text": data.item_texts[second]})
    assert patched.status_code == 202 and patched.json()["job_id"] != accepted["job_id"]
    wait_until_idle(queue)
    body = client.get(f"/v1/items/{name}").json()
    assert body["status"] == "warm"
    truth = {str(u) for u, i in data.splits["cold_test"].tolist() if i == second}
    assert len(truth & {u["user_id"] for u in body["simulated_users"]}) >= 5
    same = client.patch(f"/v1/items/{name}", json={"text": data.item_texts[second]})
    assert same.status_code == 200 and same.json()["job_id"] == patched.json()["job_id"]
    assert client.patch("/v1/items/nope", json={"text": "x"}).status_code == 404
    warm = str(data.warm_items[1])
    refused = client.patch(f"/v1/items/{warm}", json={"text": "x"})
    assert refused.status_code == 409 and "data-set item" in refused.json()["detail"]
    assert client.patch(f"/v1/items/{name}", json={"text": ""}).status_code == 422


def test_categories_restrict_recommendations_and_neighbors_through_a_refresh(service) -> None:
    client, runtime, queue = service
    data = planted_dataset()
    items = [int(i) for i in data.cold_test_items[9:13]]
    shelves = ["shelf-a", "shelf-b", "shelf-a", "shelf-b"]
    for item, shelf in zip(items, shelves, strict=True):
        body = {"id": f"shelved-{item}", "text": data.item_texts[item], "categories": [shelf]}
        assert client.post("/v1/items", json=body).status_code == 202
    wait_until_idle(queue)
    shown = client.get(f"/v1/items/shelved-{items[0]}").json()
    assert shown["categories"] == ["shelf-a"]
    clash = {"id": f"shelved-{items[0]}", "text": data.item_texts[items[0]], "categories": []}
    assert client.post("/v1/items", json=clash).status_code == 409
    on_a = {f"shelved-{i}" for i, shelf in zip(items, shelves, strict=True) if shelf == "shelf-a"}

    def listed(path: str, **params) -> list[str]:
        answer = client.get(path, params={"k": 100, **params})
        assert answer.status_code == 200, answer.text
        return [r["item_id"] for r in answer.json()["items"]]

    for user in ("0", "newcomer-shelves"):
        if user != "0":  # a folded-in user too
            sent = {"interactions": [{"user_id": user, "item_id": str(data.warm_items[0])}]}
            client.post("/v1/interactions", json=sent)
        path = f"/v1/users/{user}/recommendations"
        assert set(listed(path, category="shelf-a")) == on_a
        assert listed(path, category="nothing-here") == []
    assert set(listed(f"/v1/items/shelved-{items[1]}/neighbors", category="shelf-a")) == on_a
    refresh(runtime, max_epochs=1)
    assert set(listed("/v1/users/0/recommendations", category="shelf-a", pool="cold")) == on_a
    assert client.get("/v1/users/0/recommendations", params={"category": "a b"}).status_code == 422


def test_a_withdrawn_item_leaves_every_recommendation_and_stays_out(service) -> None:
    """DELETE: out of the user's (remembered) recommendations at once, the record kept; a
    late warm-up, a late vector write and a refresh do not bring it back."""
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[6])
    post_cold_item(client, queue, item, suffix="-withdrawn")
    name = f"new-{item}-withdrawn"
    user = client.get(f"/v1/items/{name}").json()["simulated_users"][0]["user_id"]

    def listed() -> list[str]:
        answer = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"})
        return [r["item_id"] for r in answer.json()["items"]]

    assert name in listed()
    gone = client.delete(f"/v1/items/{name}")
    assert gone.status_code == 200 and gone.json()["withdrawn_at"]
    assert name not in listed()
    assert client.delete(f"/v1/items/{name}").json() == gone.json()  # a repeat: the same
    kept = client.get(f"/v1/items/{name}").json()
    assert kept["withdrawn_at"] == gone.json()["withdrawn_at"] and kept["simulated_users"]
    again = client.post("/v1/items", json={"id": name, "text": data.item_texts[item]})
    assert again.status_code == 409 and "withdrawn" in again.json()["detail"]
    assert client.get(f"/v1/items/{name}/neighbors").status_code == 409
    assert client.delete("/v1/items/nope").status_code == 404
    record = runtime.store.get_item(name)
    row = record.index
    assert warm_up_item(runtime, name)["skipped"] == "withdrawn"
    index_item(runtime, record, row, np.ones((1, runtime.release().items.shape[1])))
    with pytest.raises(KeyError):
        runtime.index.vectors("items", [row])
    refresh(runtime, max_epochs=1)
    assert name not in listed() and row not in runtime.store.indexed_items()
    with pytest.raises(KeyError):
        runtime.index.vectors("items", [row])


def test_old_version_folders_are_deleted_and_their_records_kept(service) -> None:
    client, runtime, _ = service
    for _ in range(3):
        something_new(client, runtime)
        refresh(runtime, max_epochs=2)
    versions = runtime.store.versions()
    assert versions[0].active and len(versions) >= 4
    kept = 1 + runtime.settings.keep_previous_versions
    assert sorted(p.name for p in runtime.models_dir.iterdir()) == sorted(
        Path(v.path).name for v in versions[:kept]
    )
    # A pruned version's record still says whether it asked the LM.
    assert runtime.asked_lm(versions[-1].id) is False and versions[-1].metrics["lm_used"] is False


def test_the_embedded_timer_refreshes_on_its_own(service) -> None:
    client, runtime, _ = service
    something_new(client, runtime)
    before = runtime.store.active_version().id
    timed = InProcessQueue(runtime)
    timed.refresh_every(0.2)
    deadline = time.monotonic() + 60
    while runtime.store.active_version().id == before and time.monotonic() < deadline:
        time.sleep(0.05)
    timed.close()
    assert runtime.store.active_version().id != before
    # Closing waits for the timer: every refresh job it created ran (none left queued, which
    # the next start would report as interrupted).
    assert not runtime.store.recent_jobs(["refresh"], "queued")
    assert not runtime.store.recent_jobs(["refresh"], "running")


class HeldQueue:
    """A queue whose workers are all busy: it takes the jobs and runs none of them."""

    def __init__(self) -> None:
        self.held: list[tuple[str, str]] = []

    def enqueue(self, item_id: str, job_id: str) -> None:
        self.held.append((item_id, job_id))

    def enqueue_refresh(self, job_id: str) -> None:
        raise AssertionError("not in this test")

    def enqueue_train(self, job_id: str) -> None:
        raise AssertionError("not in this test")

    def close(self) -> None:
        pass


def test_a_posted_item_is_recommendable_by_content_before_its_warm_up_runs(service) -> None:
    _, runtime, _ = service
    data = planted_dataset()
    item = int(data.cold_test_items[6])
    queue = HeldQueue()
    with TestClient(create_app(runtime, queue)) as client:
        body = {"id": "waiting", "text": data.item_texts[item]}
        assert client.post("/v1/items", json=body).status_code == 202
        assert queue.held and client.get("/v1/items/waiting").json()["status"] == "queued"
        row = runtime.store.get_item("waiting").index
        expected = runtime.release().warmer.content_vectors(bag_of_words([body["text"]]))
        np.testing.assert_allclose(runtime.index.vectors("items", [row]), expected, rtol=1e-5)
        # The users its content suits find it among the cold items already.
        user = int(np.argmax(runtime.release().users @ expected[0]))
        listed = client.get(f"/v1/users/{user}/recommendations", params={"pool": "cold"}).json()
        assert "waiting" in [r["item_id"] for r in listed["items"]]
    # Leave nothing pending for the tests after this one: the held job runs now.
    (held,) = queue.held
    assert warm_up_item(runtime, *held)["status"] == "warm"


def test_a_list_of_items_is_stored_all_or_nothing_and_shown_by_content_at_once(service) -> None:
    _, runtime, _ = service
    data = planted_dataset()
    items = [int(item) for item in data.cold_test_items[7:10]]
    body = [{"id": f"batch-{item}", "text": data.item_texts[item]} for item in items]
    queue = HeldQueue()
    with TestClient(create_app(runtime, queue)) as client:
        taken = client.post("/v1/items", json=[*body, {"id": "0", "text": "not item 0's text"}])
        assert taken.status_code == 409 and "'0'" in taken.json()["detail"]
        assert [client.get(f"/v1/items/{b['id']}").status_code for b in body] == [404] * 3
        assert not queue.held

        response = client.post("/v1/items", json=body)
        assert response.status_code == 202, response.text
        answers = response.json()
        assert [a["item_id"] for a in answers] == [b["id"] for b in body]
        assert {a["status"] for a in answers} == {"queued"}
        assert queue.held == [(a["item_id"], a["job_id"]) for a in answers]
        rows = [runtime.store.get_item(b["id"]).index for b in body]
        texts = [b["text"] for b in body]
        expected = runtime.release().warmer.content_vectors(bag_of_words(texts))
        np.testing.assert_allclose(runtime.index.vectors("items", rows), expected, atol=1e-5)

        repeated = client.post("/v1/items", json=body[:2])
        assert repeated.status_code == 200
        assert [a["job_id"] for a in repeated.json()] == [a["job_id"] for a in answers[:2]]
        single = client.post("/v1/items", json=body[2])
        assert single.status_code == 200 and single.json()["job_id"] == answers[2]["job_id"]
        assert len(queue.held) == 3  # the repeats enqueued nothing
    for held in queue.held:  # leave nothing pending for the tests after this one
        assert warm_up_item(runtime, *held)["status"] == "warm"


def test_items_accepted_but_never_enqueued_are_warmed_at_start(service) -> None:
    """A crash between the 202 and the enqueue: the store has the item, the queue not."""
    client, runtime, queue = service
    data = planted_dataset()
    item = int(data.cold_test_items[4])
    runtime.store.submit_item(f"new-{item}", data.item_texts[item])
    assert client.get(f"/v1/items/new-{item}").json()["status"] == "queued"
    assert requeue_pending(runtime, queue) == 1
    wait_until_idle(queue)
    assert client.get(f"/v1/items/new-{item}").json()["status"] == "warm"


def test_what_a_killed_process_left_is_cleared_at_the_next_start(service) -> None:
    """A refresh killed after writing its folder and a collection, before registering its
    version (tests/services/test_killed.py kills real processes; this is the clean-up)."""
    client, runtime, queue = service
    wait_until_idle(queue)
    served = runtime.index.collections()
    orphan = runtime.models_dir / "v-killed-refresh"
    orphan.mkdir()
    (orphan / "users.npy").write_bytes(b"half written")
    dim = np.asarray(runtime.release().users).shape[1]
    runtime.index.build("v-killed-refresh", "users", np.arange(3), np.ones((3, dim)))
    job = runtime.store.create_job("refresh")
    runtime.store.start_job(job.id)
    finished = runtime.store.create_job("refresh")
    runtime.store.finish_job(finished.id, "succeeded")

    recovered = recover_after_restart(runtime)

    assert recovered == {
        "jobs": [job.id],
        "folders": ["v-killed-refresh"],
        "collections": [runtime.index.collection("users", "v-killed-refresh")],
    }
    assert not orphan.exists() and runtime.index.collections() == served
    assert runtime.store.get_job(job.id).status == "failed"
    assert "interrupted" in runtime.store.get_job(job.id).error
    assert runtime.store.get_job(finished.id).status == "succeeded"
    assert recover_after_restart(runtime) == {"jobs": [], "folders": [], "collections": []}
    assert client.get("/v1/users/0/recommendations").json()["user_vector"] == "model"


def test_writes_need_the_key_when_one_is_set(service, monkeypatch) -> None:
    client, runtime, _ = service
    monkeypatch.setattr(runtime.settings, "api_key", SecretStr("s3cret"))
    body = {"id": "keyed", "text": "alpha beta"}
    assert client.post("/v1/items", json=body).status_code == 401
    assert client.post("/v1/items", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/admin/refresh").status_code == 401
    assert client.get("/v1/users/0/recommendations").status_code == 200
    ok = client.post("/v1/items", json=body, headers={"X-API-Key": "s3cret"})
    assert ok.status_code == 202


def test_a_version_that_kept_the_lm_asks_a_refining_service_process_over_http(
    tmp_path,
) -> None:
    """lm=always and no LLMINS_SIMULATOR_URL (embedded mode): the runtime starts the refining
    service as a child process, and the warm-up's prompts (the refiner's best 20 candidates)
    reach it over HTTP, counted by the service itself; another version's child replaces it;
    closing the runtime stops it.
    Distributed mode has no child to start: without a URL it says what to set."""
    port = free_port()  # fixed: a later version's child needs it free
    runtime = Runtime(Settings(state_dir=tmp_path, simulator_port=port), embedder=bag_of_words)
    data = planted_dataset()
    install_lm_version(runtime)
    release = runtime.release()
    assert release.warmer.uses_lm and release.manifest["warmer"]["lm_used"]
    gain = release.manifest["warmer"]["lm_measurement"]["val"]["precision_gain"]
    assert set(gain) >= {"mean", "se"}
    # Published where the refining service is started from (compose: /state/simulator).
    published = runtime.settings.adapter_link.resolve()
    assert published == Path(release.manifest["simulator_path"]).resolve()
    item = int(data.cold_test_items[0])
    runtime.store.submit_item("lm-item", data.item_texts[item])
    try:
        result = warm_up_item(runtime, "lm-item")
        url = runtime.refining_url(release.version)
        assert url is not None and prompts_scored(url) == 20
        # What GET /v1/items/{id} reports as each simulated user's score source.
        assert runtime.asked_lm(result["model_version"])
        # A refresh activates another LM version: its child replaces this one (one model
        # in memory, the same port), and the old version has none left.
        runtime.simulator_for(replace(release, version="next"))
        assert runtime.refining_url(release.version) is None
        assert runtime.refining_url("next") == url and prompts_scored(url) == 0
    finally:
        runtime.close()
    assert result["status"] == "warm"
    assert result["simulated_users"] == release.warmer.config.keep
    # Each simulated user's evidence holds the LM's answer about them, a probability.
    answers = [why["lm P(yes)"] for _, _, why in runtime.store.simulated_detail("lm-item")]
    assert len(answers) == release.warmer.config.keep and all(0 < p < 1 for p in answers)
    with pytest.raises(httpx.TransportError):
        httpx.get(url.removesuffix("/v1") + "/health")
    distributed = Runtime(Settings(state_dir=tmp_path, mode="distributed"), embedder=bag_of_words)
    try:
        with pytest.raises(RuntimeError, match="distributed mode needs LLMINS_SIMULATOR_URL"):
            distributed.simulator_for(distributed.release())
    finally:
        distributed.close()
