"""Faults inside one service process: the refining service down or slow, a refresh that
fails halfway. Nothing posted may be lost, and the service keeps answering throughout.

(A worker killed mid-task and a restarted Redis need real processes: test_processes.py.)
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.queues import InProcessQueue
from services.runtime import Runtime
from services.settings import Settings
from tests.factories import SimulatorServer, bag_of_words, install_lm_version, planted_dataset
from tests.services.conftest import serve
from tests.services.test_api import something_new


def wait_for(condition, seconds: float = 60.0, every: float = 0.05):
    """Poll ``condition`` until it returns something true; that value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not met within {seconds} s")
        time.sleep(every)


def cold_text(position: int = 0) -> str:
    data = planted_dataset()
    return data.item_texts[int(data.cold_test_items[position])]


def test_an_item_is_served_degraded_while_the_refining_service_is_down_or_slow(
    tmp_path,
) -> None:
    """Down, then answering too slowly, then back: the item is recommendable by its content
    vector all along, says ``degraded`` with the reason, and warms once the service is back,
    with one set of simulated users however many tries it took."""
    # Installed with the LM in process, so the adapter exists; served over HTTP from here on.
    installer = Runtime(Settings(state_dir=tmp_path), embedder=bag_of_words)
    install_lm_version(installer)
    release = installer.release()
    installer.close()
    server = SimulatorServer(release)
    settings = Settings(
        state_dir=tmp_path,
        simulator_url=server.url,
        simulator_timeout_s=4.0,  # scoring 20 prompts takes well under that
        warm_up_backoff_s=0.2,
        warm_up_retries=12,
    )
    runtime = Runtime(settings, embedder=bag_of_words)
    queue = InProcessQueue(runtime)
    try:
        with TestClient(create_app(runtime, queue)) as client:
            text = cold_text()
            assert client.post("/v1/items", json={"id": "fresh", "text": text}).status_code == 202

            def item_with_error(fragment: str):
                body = client.get("/v1/items/fresh").json()
                return body if fragment in (body["error"] or "") else None

            down = wait_for(lambda: item_with_error("unreachable"))
            assert down["status"] == "degraded" and down["simulated_users"] == []
            # Served meanwhile: its content vector is indexed and it is recommended.
            index = runtime.store.get_item("fresh").index
            content = release.warmer.content_vectors(bag_of_words([text]))
            np.testing.assert_allclose(
                runtime.index.vectors("items", [index]), content, rtol=1e-5, atol=1e-6
            )
            served = client.get("/v1/users/0/recommendations", params={"pool": "cold"})
            assert [r["item_id"] for r in served.json()["items"]] == ["fresh"]

            server.delay_s = 30.0  # far past the client's timeout
            server.start()
            slow = wait_for(lambda: item_with_error("no answer in"), seconds=60)
            assert slow["status"] == "degraded"

            server.delay_s = 0.0
            warm = wait_for(
                lambda: (body := client.get("/v1/items/fresh").json())["status"] == "warm" and body,
                seconds=60,
            )
            assert warm["error"] is None and warm["model_version"] == release.version
            users = [u["user_id"] for u in warm["simulated_users"]]
            kept = release.warmer.config.keep
            assert len(users) == kept and len(set(users)) == kept
            assert len(runtime.store.simulated_for("fresh")) == kept
            job = runtime.store.latest_job("fresh")
            assert job.status == "succeeded" and job.attempts >= 3
            warmed = runtime.index.vectors("items", [index])
            assert not np.allclose(warmed, content)
    finally:
        queue.close()
        server.stop()
        runtime.close()


def test_retries_stop_after_the_configured_number_and_the_item_stays_served(
    tmp_path,
) -> None:
    installer = Runtime(Settings(state_dir=tmp_path), embedder=bag_of_words)
    install_lm_version(installer)
    installer.close()
    settings = Settings(
        state_dir=tmp_path,
        simulator_url="http://127.0.0.1:9/v1",  # the discard port: nobody answers
        warm_up_backoff_s=0.05,
        warm_up_retries=2,
    )
    runtime = Runtime(settings, embedder=bag_of_words)
    queue = InProcessQueue(runtime)
    try:
        record, job, _ = runtime.store.submit_item("never", cold_text(1))
        queue.enqueue(record.id, job.id)
        wait_for(queue.idle, seconds=30)
        assert runtime.store.get_job(job.id).attempts == 3  # the first try and 2 retries
        item = runtime.store.get_item("never")
        assert item.status == "failed" and "unreachable" in item.error
        assert item.error.startswith("2 retries spent")
        assert runtime.store.pending_items() == ["never"]  # sent again at the next start
        assert len(runtime.index.vectors("items", [item.index])) == 1
    finally:
        queue.close()
        runtime.close()


@pytest.fixture
def service(tmp_path):
    """A state of its own: the refresh below changes the served version."""
    yield from serve(tmp_path)


def test_a_refresh_that_fails_halfway_leaves_the_old_version_serving(service, monkeypatch) -> None:
    client, runtime, queue = service
    before = client.get("/v1/users/3/recommendations").json()
    version = runtime.store.active_version().id
    build = runtime.index.build

    def fail_on_users(version_name, kind, *args, **kwargs):
        if kind == "users":  # the new items collection is built by now
            raise OSError("disk full")
        return build(version_name, kind, *args, **kwargs)

    monkeypatch.setattr(runtime.index, "build", fail_on_users)
    something_new(client, runtime)
    job = client.post("/v1/admin/refresh").json()
    wait_for(queue.idle, seconds=120)
    failed = client.get(f"/v1/jobs/{job['id']}").json()
    assert failed["status"] == "failed" and "disk full" in failed["error"]
    assert runtime.store.active_version().id == version
    assert runtime.index.active_version("items") == version
    assert runtime.index.active_version("users") == version
    assert client.get("/v1/users/3/recommendations").json() == before
    # Posting and warming go on under the old version.
    client.post("/v1/items", json={"id": "during", "text": cold_text()})
    wait_for(queue.idle)
    assert client.get("/v1/items/during").json()["model_version"] == version

    monkeypatch.undo()  # the disk has room again: the next refresh goes through
    job = client.post("/v1/admin/refresh").json()
    wait_for(queue.idle, seconds=120)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"
    assert runtime.index.active_version("items") != version
    # The item posted meanwhile moved into the new collections with the rest.
    cold = client.get("/v1/users/3/recommendations", params={"pool": "cold"}).json()
    assert cold["model_version"] != version
    assert [r["item_id"] for r in cold["items"]] == ["during"]
