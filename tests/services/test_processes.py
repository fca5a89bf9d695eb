"""The service as real processes: a Celery worker on the Redis broker, the embedded server.

Both talk over real connections (Redis at 127.0.0.1:6379, HTTP on loopback); nothing is
mocked. The worker test trains on the planted data set with the packaged language model's
vectors, the embedded server bootstraps CiteULike itself (epochs capped).
"""

from __future__ import annotations

import os
import shutil
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
from services.simulator.process import free_port, stop
from services.store import Store
from tests.conftest import REPO_ROOT
from tests.factories import (
    SimulatorServer,
    install_lm_version,
    kept_per_item,
    planted_dataset,
    prompts_scored,
)

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


def start_worker(env: dict[str, str], log: Path, queue: str = "celery") -> subprocess.Popen:
    """A Celery worker process (one task at a time) on ``queue``."""
    command = [sys.executable, "-m", "celery", "-A", "services.worker.tasks", "worker"]
    options = ["--pool", "solo", "--queues", queue, "--loglevel", "INFO"]
    return start(command + options, env, log)


class RedisServer:
    """A private Redis on a free port that a test may stop and start again.

    No persistence: a restart loses every queued message, the worst case for the service.
    """

    def __init__(self, log: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed (the service's broker)")
        self.port = free_port()
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = start(["redis-server", *options, "--appendonly", "no"], {}, self.log)
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis.log").start()
    yield server
    server.stop()


def wait_for_status(store: Store, item_id: str, status: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while store.get_item(item_id).status != status:
        if time.monotonic() > deadline:
            item = store.get_item(item_id)
            pytest.fail(f"item {item_id} is {item.status} ({item.error}), not {status}")
        time.sleep(0.1)


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
    worker = start_worker(env, tmp_path / "worker.log", queue)
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
    kept = kept_per_item(store.active_version().path)
    assert result["status"] == "warm" and result["simulated_users"] == kept
    assert store.get_item(record.id).status == "warm"
    assert len(store.simulated_for(record.id)) == kept
    assert store.get_job(job.id).status == "succeeded"
    index = VectorIndex(path=worker_state / "qdrant")
    try:
        vector = index.vectors("items", [store.get_item(record.id).index])[0]
    finally:
        index.close()
    assert abs(vector).sum() > 0
    store.dispose()


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "celery", "-A", "services.worker.tasks", "worker", "--concurrency", "2"],
        ["-m", "services.api"],
    ],
    ids=["prefork worker", "api"],
)
def test_distributed_processes_refuse_a_local_index(command, tmp_path) -> None:
    """Local Qdrant allows one process per folder: several would corrupt or lock it."""
    env = {
        "LLMINS_STATE_DIR": str(tmp_path),
        "LLMINS_MODE": "distributed",
        "LLMINS_REDIS_URL": REDIS_URL,
    }
    env = {k: v for k, v in {**os.environ, **env}.items() if k != "LLMINS_QDRANT_URL"}
    result = subprocess.run(
        [sys.executable, *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "needs a Qdrant server: set LLMINS_QDRANT_URL" in result.stdout + result.stderr
    assert not (tmp_path / "qdrant").exists()


@pytest.fixture(scope="module")
def lm_worker_state(tmp_path_factory):
    """(state folder, release) of a version whose warm-up asks the refining service."""
    state = tmp_path_factory.mktemp("lm-worker-state")
    runtime = Runtime(Settings(state_dir=state))
    install_lm_version(runtime, MeanPoolEncoder().encode(list(planted_dataset().item_texts)))
    release = runtime.release()
    runtime.close()
    return state, release


def test_a_worker_killed_mid_task_leaves_the_item_warmed_once(
    lm_worker_state, redis_server, tmp_path
) -> None:
    """SIGKILL while the task waits on the refining service: the task is not acknowledged,
    so it runs again on the next worker, and the item ends with one set of simulated users."""
    state, release = lm_worker_state
    simulator = SimulatorServer(release).start()
    simulator.delay_s = 600.0  # the first worker is stuck in its call when it dies
    env = {
        "LLMINS_STATE_DIR": str(state),
        "LLMINS_REDIS_URL": redis_server.url,
        "LLMINS_MODE": "distributed",
        "LLMINS_SIMULATOR_URL": simulator.url,
        "LLMINS_SIMULATOR_TIMEOUT_S": "700",
        "LLMINS_TASK_VISIBILITY_TIMEOUT_S": "5",
    }
    store = Store(f"sqlite:///{state / 'llmins.sqlite'}")
    data = planted_dataset()
    record, job, _ = store.submit_item("killed", data.item_texts[int(data.cold_test_items[2])])
    client = Celery(broker=redis_server.url, backend=redis_server.url)
    first = start_worker(env, tmp_path / "worker-1.log")
    second = None
    try:
        client.send_task("llmins.warm_up", args=[record.id, job.id])
        wait_for_status(store, record.id, "warming", seconds=120)
        first.kill()  # SIGKILL: no chance to acknowledge, requeue or clean up
        first.wait()
        simulator.delay_s = 0.0
        second = start_worker(env, tmp_path / "worker-2.log")
        wait_for_status(store, record.id, "warm", seconds=180)
        # The worker process asked the refining service over HTTP (its own count).
        assert prompts_scored(simulator.url) >= 20
        # Past the visibility timeout every copy of the message has been delivered.
        time.sleep(10)
    finally:
        for worker in (first, second):
            if worker is not None:
                stop(worker)
        simulator.stop()
    users = [user for user, _ in store.simulated_for(record.id)]
    kept = kept_per_item(store.active_version().path)
    assert len(users) == kept and len(set(users)) == kept
    assert store.get_job(job.id).attempts >= 2
    assert store.get_item(record.id).status == "warm"
    store.dispose()


def test_a_celery_worker_marks_an_item_failed_when_its_retries_are_spent(
    lm_worker_state, redis_server, tmp_path
) -> None:
    """The refining service never answers: Celery's autoretry tries again after a back-off,
    and the bound task's last failure marks the item ``failed`` (still recommendable by its
    content vector) with the reason."""
    state, _ = lm_worker_state
    env = {
        "LLMINS_STATE_DIR": str(state),
        "LLMINS_REDIS_URL": redis_server.url,
        "LLMINS_MODE": "distributed",
        "LLMINS_SIMULATOR_URL": f"http://127.0.0.1:{free_port()}/v1",  # nobody listens
        "LLMINS_WARM_UP_RETRIES": "1",
        "LLMINS_WARM_UP_BACKOFF_S": "0.5",
    }
    store = Store(f"sqlite:///{state / 'llmins.sqlite'}")
    data = planted_dataset()
    record, job, _ = store.submit_item("unanswered", data.item_texts[int(data.cold_test_items[5])])
    worker = start_worker(env, tmp_path / "worker.log")  # it sends pending items itself
    try:
        wait_for_status(store, record.id, "failed", seconds=180)
    finally:
        stop(worker)
    item = store.get_item(record.id)
    assert item.error.startswith("1 retries spent") and "unreachable" in item.error
    assert store.get_job(job.id).attempts == 2  # the first try and its one retry
    store.dispose()


def test_items_posted_around_a_redis_restart_are_not_lost(
    worker_state, redis_server, tmp_path
) -> None:
    """Redis (without persistence) restarts with one item queued in it, and another item is
    posted while it is down: both answers are 202, and a worker that starts afterwards warms
    both, from the relational store."""
    from fastapi.testclient import TestClient

    from services.api.app import create_app
    from services.queues import CeleryQueue
    from services.worker.celery_app import make_celery

    settings = Settings(
        # The API needs only the store to accept items; its own (empty) index folder keeps
        # the local Qdrant of the state free for the worker, as a Qdrant server would.
        state_dir=tmp_path / "api",
        database_url=f"sqlite:///{worker_state / 'llmins.sqlite'}",
        redis_url=redis_server.url,
    )
    api_runtime = Runtime(settings)
    queue = CeleryQueue(make_celery(settings))
    data = planted_dataset()
    texts = {f"restart-{n}": data.item_texts[int(data.cold_test_items[3 + n])] for n in range(2)}
    worker = None
    try:
        with TestClient(create_app(api_runtime, queue)) as api:
            posted = api.post("/v1/items", json={"id": "restart-0", "text": texts["restart-0"]})
            assert posted.status_code == 202, posted.text
            redis_server.stop()
            started = time.monotonic()
            posted = api.post("/v1/items", json={"id": "restart-1", "text": texts["restart-1"]})
            assert posted.status_code == 202, posted.text
            assert time.monotonic() - started < 10  # refused connections, not a hang
        redis_server.start()  # empty: the first item's message is gone
        env = {
            "LLMINS_STATE_DIR": str(worker_state),
            "LLMINS_REDIS_URL": redis_server.url,
            "LLMINS_MODE": "distributed",
        }
        worker = start_worker(env, tmp_path / "worker.log")
        for item_id in texts:
            wait_for_status(api_runtime.store, item_id, "warm", seconds=180)
    finally:
        if worker is not None:
            stop(worker)
        api_runtime.close()
    kept = kept_per_item(api_runtime.store.active_version().path)
    for item_id in texts:
        assert len(api_runtime.store.simulated_for(item_id)) == kept


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
        wait_ready(base, server, tmp_path / "server.log", minutes=40)
        data = load_dataset("citeulike", data_dir)
        item = int(data.cold_test_items[0])
        posted = httpx.post(
            f"{base}/v1/items", json={"id": str(item), "text": data.item_texts[item]}
        )
        assert posted.status_code == 202, posted.text
        body = wait_warm(base, str(item))
        users = body["simulated_users"]
        (manifest,) = (tmp_path / "state" / "models").glob("*/manifest.json")
        assert len(users) == kept_per_item(manifest.parent)
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
