"""The service as real processes: a Celery worker on the Redis broker, the embedded server.

Both talk over real connections (Redis at 127.0.0.1:6379, HTTP on loopback); nothing is
mocked. The worker test trains on the planted data set with the packaged language model's
vectors, the embedded server bootstraps CiteULike itself (epochs capped).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from celery import Celery

from models.encoders import MeanPoolEncoder
from services.bootstrap import install
from services.index import VectorIndex
from services.runtime import Runtime
from services.settings import Settings
from services.store import Store
from tests.conftest import REPO_ROOT
from tests.factories import free_port, planted_dataset, stop

#: A Redis database of its own, so the tests never meet another app's messages.
REDIS_URL = "redis://127.0.0.1:6379/13"


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def worker_state(tmp_path_factory) -> Path:
    """A state folder with a model trained on the planted data (MiniLM content vectors)."""
    state = tmp_path_factory.mktemp("worker-state")
    runtime = Runtime(Settings(state_dir=state))
    data = planted_dataset()
    content = MeanPoolEncoder().encode(list(data.item_texts))
    install(runtime, data, content, max_epochs=20, progress=False)
    runtime.close()  # the worker process owns the local index from here on
    return state


def test_a_celery_worker_warms_an_item_once(worker_state, tmp_path) -> None:
    env = {
        "LLMINS_STATE_DIR": str(worker_state),
        "LLMINS_REDIS_URL": REDIS_URL,
        "LLMINS_MODE": "distributed",
    }
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "services.worker.tasks",
            "worker",
            "--pool",
            "solo",
            "--queues",
            queue,
            "--loglevel",
            "INFO",
        ],
        env,
        tmp_path / "worker.log",
    )
    store = Store(f"sqlite:///{worker_state / 'llmins.sqlite'}")
    data = planted_dataset()
    item = int(data.cold_test_items[0])
    record, job, created = store.submit_item(f"new-{item}", data.item_texts[item])
    assert created
    client = Celery(broker=REDIS_URL, backend=REDIS_URL)
    try:
        first = client.send_task("llmins.warm_up", args=[record.id, job.id], queue=queue)
        result = first.get(timeout=180)
        # Redelivered (the same message twice, as after a worker died before its ack).
        second = client.send_task("llmins.warm_up", args=[record.id, job.id], queue=queue)
        assert second.get(timeout=60)["skipped"] == "already warm"
    finally:
        stop(worker)
    assert result["status"] == "warm" and result["simulated_users"] == 15
    assert store.get_item(record.id).status == "warm"
    assert len(store.simulated_for(record.id)) == 15
    assert store.get_job(job.id).status == "succeeded"
    index = VectorIndex(path=worker_state / "qdrant")
    try:
        vector = index.vectors("items", [store.get_item(record.id).index])[0]
    finally:
        index.close()
    assert abs(vector).sum() > 0
    store.dispose()


@pytest.mark.slow
def test_the_embedded_server_warms_a_citeulike_cold_item(data_dir, tmp_path) -> None:
    """README command 1's process: bootstrap CiteULike, serve, warm a posted cold item."""
    from models.data import load_dataset

    port = free_port()
    env = {"LLMINS_STATE_DIR": str(tmp_path / "state"), "LLMINS_DATA_DIR": str(data_dir)}
    server = start(
        [sys.executable, "-m", "services.api", "--port", str(port), "--max-epochs", "3"],
        env,
        tmp_path / "server.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, tmp_path / "server.log", minutes=15)
        data = load_dataset("citeulike", data_dir)
        item = int(data.cold_test_items[0])
        posted = httpx.post(
            f"{base}/v1/items", json={"id": str(item), "text": data.item_texts[item]}
        )
        assert posted.status_code == 202, posted.text
        body = wait_warm(base, str(item))
        users = body["simulated_users"]
        assert len(users) == 15
        recommended = httpx.get(
            f"{base}/v1/users/{users[0]['user_id']}/recommendations",
            params={"pool": "all", "k": 100},
        ).json()
        assert str(item) in [r["item_id"] for r in recommended["items"]]
    finally:
        stop(server)


def wait_ready(base: str, server: subprocess.Popen, log: Path, minutes: float) -> None:
    deadline = time.monotonic() + 60 * minutes
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"the server was not ready in {minutes} min:\n{log.read_text()[-3000:]}")


def wait_warm(base: str, item_id: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = httpx.get(f"{base}/v1/items/{item_id}").json()
        if body["status"] in ("warm", "failed", "degraded"):
            assert body["status"] == "warm", body
            return body
        time.sleep(0.05)
    pytest.fail(f"item {item_id} did not warm in {seconds} s")
