"""Writes and admin endpoints need the API key, reads do not, and the key is never shown:
not in a log record of any logger at DEBUG, not in an answer, not in the settings' repr."""

from __future__ import annotations

import logging
import secrets
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.api.app import create_app
from services.settings import Settings
from tests.factories import planted_dataset
from tests.services.conftest import api_routes_of

KEY = secrets.token_hex(16)
WRONG = secrets.token_hex(16)
USER = "0"


def warm_item() -> str:
    return str(planted_dataset().warm_items[0])


def unseen_item() -> str:
    """A warm item ``USER`` has no interaction with, in any split: a write that adds one."""
    data = planted_dataset()
    seen = {i for split in data.splits.values() for u, i in split.tolist() if u == int(USER)}
    return str(next(i for i in data.warm_items.tolist() if i not in seen))


def cold_text(n: int) -> str:
    """The text of a held-out item: its warm-up succeeds (the test embedder knows its words)."""
    data = planted_dataset()
    return data.item_texts[int(data.cold_test_items[n])]


def wait_for_status(client, item_id: str, status: str, seconds: float = 60.0) -> None:
    """Until the item's first warm-up is over (a failed one may be retried later)."""
    deadline = time.monotonic() + seconds
    while client.get(f"/v1/items/{item_id}").json()["status"] != status:
        if time.monotonic() > deadline:
            raise TimeoutError(f"item {item_id} did not become {status}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def keyed(service):
    """(client, runtime, refreshes) with the key set. Warm-ups run; refreshes and trainings
    are recorded (job ids), not run: each would retrain the backbone."""
    client, runtime, queue = service
    refreshes: list[str] = []
    posted = client.post("/v1/items", json={"id": PATCHED, "text": cold_text(2)})
    assert posted.status_code == 202, posted.text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime.settings, "api_key", SecretStr(KEY))
        patch.setattr(queue, "enqueue_refresh", refreshes.append)
        patch.setattr(queue, "enqueue_train", refreshes.append)
        yield client, runtime, refreshes


#: Every endpoint that writes or administers (method, route), and its status with the key.
WRITES = {
    ("POST", "/v1/items"): 202,
    ("POST", "/v1/interactions"): 200,
    ("POST", "/v1/admin/refresh"): 202,
    ("POST", "/v1/admin/train"): 202,
    ("DELETE", "/v1/items/{item_id}"): 200,
    ("PATCH", "/v1/items/{item_id}"): 202,
}
#: A posted item (before the key is set) whose text the PATCH changes.
PATCHED = "patched-item"


def valid_request(method: str, route: str) -> tuple[str, dict | None]:
    """The path and body of a request to ``route`` that writes something."""
    return {
        ("POST", "/v1/items"): ("/v1/items", {"id": "keyed-item", "text": cold_text(0)}),
        ("POST", "/v1/interactions"): (
            "/v1/interactions",
            {"interactions": [{"user_id": USER, "item_id": unseen_item()}]},
        ),
        ("POST", "/v1/admin/refresh"): ("/v1/admin/refresh", None),
        ("POST", "/v1/admin/train"): ("/v1/admin/train", None),
        # The last warm item: no other test here reads it.
        ("DELETE", "/v1/items/{item_id}"): (f"/v1/items/{planted_dataset().warm_items[-1]}", None),
        ("PATCH", "/v1/items/{item_id}"): (f"/v1/items/{PATCHED}", {"text": cold_text(3)}),
    }[(method, route)]


def written(runtime, refreshes: list[str]) -> tuple:
    """What the writes change and a warm-up running meanwhile does not: how many items,
    real interactions, refreshes and withdrawn items there are, and a posted item's text."""
    store = runtime.store
    counts = store.counts()
    return (
        sum(counts["items"].values()),
        counts["interactions"]["real"],
        len(refreshes),
        len(store.withdrawn_indices()),
        store.get_item(PATCHED).text,
    )


NOT_THE_KEY = {
    "missing": [],
    "wrong": [(b"x-api-key", WRONG.encode())],
    "a prefix": [(b"x-api-key", KEY[:-1].encode())],
    "empty": [(b"x-api-key", b"")],
    "not ASCII": [(b"x-api-key", b"\xe9\xff" + KEY.encode())],
}


@pytest.mark.parametrize(("write", "status"), WRITES.items())
def test_writes_answer_401_without_the_key_and_succeed_with_it(keyed, write, status) -> None:
    client, runtime, refreshes = keyed
    method = write[0]
    path, body = valid_request(*write)
    before = written(runtime, refreshes)
    for name, headers in NOT_THE_KEY.items():
        refused = client.request(method, path, json=body, headers=headers)
        assert refused.status_code == 401, (name, refused.text)
        assert "X-API-Key" in refused.json()["detail"], name
    assert written(runtime, refreshes) == before
    accepted = client.request(method, path, json=body, headers={"X-API-Key": KEY})
    assert accepted.status_code == status, accepted.text
    assert written(runtime, refreshes) != before


def test_every_write_route_is_one_of_those(keyed) -> None:
    """A new write endpoint must join ``WRITES``, the proof that it needs the key."""
    writes = {"POST", "PUT", "PATCH", "DELETE"}
    routes = api_routes_of(keyed[0].app.routes)
    assert {(m, r.path) for r in routes for m in r.methods & writes} == set(WRITES)


def test_reads_stay_open(keyed) -> None:
    client = keyed[0]
    job = client.post("/v1/admin/refresh", headers={"X-API-Key": KEY}).json()["id"]
    for path in (
        f"/v1/items/{warm_item()}",
        f"/v1/jobs/{job}",
        f"/v1/users/{USER}/recommendations",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert client.get(path).status_code == 200, path


def test_reads_need_the_key_where_reads_are_protected(keyed, monkeypatch) -> None:
    """The setting is read when the app is built (open reads add nothing to the hot
    path): an app built with it."""
    client, runtime, _ = keyed
    monkeypatch.setattr(runtime.settings, "protect_reads", True)
    with TestClient(create_app(runtime, client.app.state.queue)) as client:
        job = client.post("/v1/admin/refresh", headers={"X-API-Key": KEY}).json()["id"]
        data_reads = (
            f"/v1/items/{warm_item()}",
            f"/v1/items/{warm_item()}/neighbors",
            f"/v1/jobs/{job}",
            f"/v1/users/{USER}",
            f"/v1/users/{USER}/recommendations",
            "/dashboard",
            "/dashboard/items",
            f"/dashboard/items/{warm_item()}",
            f"/dashboard/users/{USER}",
            "/dashboard/jobs",
        )
        for path in data_reads:
            for name, headers in NOT_THE_KEY.items():
                refused = client.get(path, headers=headers)
                assert refused.status_code == 401, (path, name)
            assert client.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert client.get(probe).status_code == 200, probe


def test_protected_reads_without_a_key_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="LLMINS_PROTECT_READS needs LLMINS_API_KEY"):
        Settings(protect_reads=True)


def test_the_key_is_in_no_log_record_and_no_answer(keyed, caplog) -> None:
    """Right, wrong and missing keys, refusals of each kind, a warm-up that succeeds and
    one that fails (its traceback logged): the key and the wrong one appear nowhere.

    A record is read by its message and its exception's text, not formatted: formatting a
    traceback parses source, which races a retried warm-up's on CPython 3.11 (#106905).
    """
    client = keyed[0]
    caplog.set_level(logging.DEBUG)
    right, wrong = {"X-API-Key": KEY}, {"X-API-Key": WRONG}
    item = {"id": "logged-item", "text": cold_text(1)}
    unknown_words = {"id": "failing-item", "text": "words the embedder lacks"}
    answers = [
        client.post("/v1/items", json=item, headers=right),
        client.post("/v1/items", json=unknown_words, headers=right),
        client.post("/v1/items", json={**item, "text": "other text"}, headers=right),  # 409
        client.post("/v1/items", json={"id": "a b", "text": "x"}, headers=right),  # 422
        client.post("/v1/items", json=item, headers=wrong),
        client.post("/v1/items", json=item),
        client.post("/v1/admin/refresh", headers=wrong),
        client.post(
            "/v1/interactions",
            json={"interactions": [{"user_id": USER, "item_id": "unknown"}]},
            headers=right,
        ),  # 404
        client.get("/v1/items/logged-item", headers=right),
    ]
    assert [a.status_code for a in answers] == [202, 202, 409, 422, 401, 401, 401, 404, 200]
    wait_for_status(client, "logged-item", "warm")
    wait_for_status(client, "failing-item", "degraded")
    logged = [
        f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}"
        for record in caplog.records
    ]
    assert any("warm-up of item failing-item failed" in line for line in logged)
    for secret in (KEY, WRONG):
        assert not [line for line in logged if secret in line]
        assert not [a for a in answers if secret in a.text or secret in str(a.headers)]


def test_the_settings_never_show_the_key(monkeypatch) -> None:
    monkeypatch.setenv("LLMINS_API_KEY", KEY)
    settings = Settings()
    assert settings.api_key.get_secret_value() == KEY
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert KEY not in shown
