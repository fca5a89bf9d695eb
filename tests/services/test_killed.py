"""The embedded process killed with SIGKILL in the middle of an import, a warm-up and a
refresh: on restart the state opens, nothing accepted is lost, and an interrupted import or
refresh either finished or left no trace. Real processes, over a small state trained from a
generated CSV (the README's "Your own data" commands, as tests/services/test_own_data.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from services.index import VectorIndex
from services.simulator.process import free_port, stop
from services.store import Store
from tests.factories import planted_dataset
from tests.services.test_own_data import worker, write_csv
from tests.services.test_processes import start, wait_ready


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A state folder trained from the planted data set's CSV (cold test items left out)."""
    folder = tmp_path_factory.mktemp("trained")
    data = planted_dataset()
    held = set(data.cold_test_items.tolist())
    items = write_csv(
        folder / "items.csv",
        ["id", "text"],
        [[f"doc-{i}", data.item_texts[i]] for i in range(data.n_items) if i not in held],
    )
    seen = np.concatenate([data.splits[part] for part in ("warm_train", "warm_val", "cold_val")])
    interactions = write_csv(
        folder / "interactions.csv",
        ["user_id", "item_id"],
        [[f"reader-{u}", f"doc-{i}"] for u, i in seen.tolist()],
    )
    env = environment(folder / "state")
    worker(
        env, "import", "--no-progress", "--items", str(items), "--interactions", str(interactions)
    )
    worker(env, "train", "--max-epochs", "3", "--no-progress")
    return folder / "state"


@pytest.fixture
def state(trained, tmp_path) -> Path:
    """A copy of the trained state for one test to kill processes over."""
    return Path(shutil.copytree(trained, tmp_path / "state", symlinks=True))


def environment(state: Path) -> dict[str, str]:
    return {"LLMINS_DATASET": "none", "LLMINS_STATE_DIR": str(state)}


def open_store(state: Path) -> Store:
    store = Store(f"sqlite:///{state / 'llmins.sqlite'}")
    store.migrate()
    return store


def serve(state: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = start(
        [sys.executable, "-m", "services.api", "--port", str(port)], environment(state), log
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, server, log, minutes=3)
    return server, base


def kill(process: subprocess.Popen) -> None:
    process.kill()  # SIGKILL: no handler runs, nothing is flushed or cleaned up
    process.wait(timeout=30)


def test_an_import_killed_midway_stores_nothing_and_runs_again(state, tmp_path) -> None:
    data = planted_dataset()
    imported = sorted(set(range(data.n_items)) - set(data.cold_test_items.tolist()))
    rows = [[f"bulk-{n // 40}", f"doc-{imported[n % 150]}"] for n in range(300_000)]
    big = write_csv(tmp_path / "bulk.csv", ["user_id", "item_id"], rows)
    store = open_store(state)
    before = store.counts()
    command = [sys.executable, "-m", "services.worker", "import", "--no-progress"]
    importing = start([*command, "--interactions", str(big)], environment(state), tmp_path / "log")
    wal = state / "llmins.sqlite-wal"
    deadline = time.monotonic() + 60
    # Rows are being written (the uncommitted transaction spills into the WAL).
    while importing.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 2_000_000:
            break
        time.sleep(0.05)
    kill(importing)
    assert importing.returncode == -9, "the import ended before the kill: use a larger file"

    assert open_store(state).counts() == before  # reopened: the transaction is gone
    again = worker(environment(state), "import", "--no-progress", "--interactions", str(big))
    assert f'"new_interactions": {len(rows)}' in again
    store.dispose()


def test_items_whose_warm_up_was_killed_are_all_warmed_after_the_restart(state, tmp_path) -> None:
    data = planted_dataset()
    texts = [data.item_texts[int(item)] for item in data.cold_test_items]
    posted = [{"id": f"new-{n}", "text": texts[n % len(texts)]} for n in range(120)]
    store = open_store(state)
    server, base = serve(state, tmp_path / "first.log")
    try:
        assert httpx.post(f"{base}/v1/items", json=posted, timeout=60).status_code == 202
        deadline = time.monotonic() + 60
        while store.get_item(posted[0]["id"]).status != "warm":  # warm-ups are under way
            assert time.monotonic() < deadline, "no warm-up ran"
            time.sleep(0.01)
    finally:
        kill(server)
    statuses = [store.get_item(item["id"]).status for item in posted]  # all stored
    assert statuses.count("warm") < len(posted), "every warm-up ended before the kill"

    server, base = serve(state, tmp_path / "second.log")
    try:
        deadline = time.monotonic() + 180
        while any(store.get_item(item["id"]).status != "warm" for item in posted):
            assert time.monotonic() < deadline, "not every item warmed after the restart"
            time.sleep(0.2)
        kept = {len(store.simulated_for(item["id"])) for item in posted}
        assert len(kept) == 1 and kept.pop() > 0  # replaced as a whole, never duplicated
        answer = httpx.get(f"{base}/v1/items/new-0").json()
        assert answer["status"] == "warm" and answer["simulated_users"]
    finally:
        stop(server)
    store.dispose()


def test_a_refresh_killed_midway_finished_or_left_no_trace(state, tmp_path) -> None:
    store = open_store(state)
    before = store.active_version().id
    data = planted_dataset()
    server, base = serve(state, tmp_path / "first.log")
    try:  # something new for the refresh to learn (one with nothing new is skipped)
        item = {"id": "before-the-refresh", "text": data.item_texts[int(data.cold_test_items[0])]}
        assert httpx.post(f"{base}/v1/items", json=item).status_code == 202
        job = httpx.post(f"{base}/v1/admin/refresh").json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/v1/jobs/{job}").json()["status"] == "queued":
            assert time.monotonic() < deadline, "the refresh did not start"
            time.sleep(0.02)
        time.sleep(0.5)  # inside the retraining
    finally:
        kill(server)
    finished = store.get_job(job).status == "succeeded"

    server, base = serve(state, tmp_path / "second.log")
    try:
        active = store.active_version().id
        versions = {record.id for record in store.versions()}
        folders = {folder.name for folder in (state / "models").iterdir()}
        if finished:
            assert "skipped" not in store.get_job(job).result and active != before
        else:
            assert active == before
            assert store.get_job(job).status == "failed"
            assert "interrupted" in store.get_job(job).error
        assert folders <= versions  # no folder of a version never registered
        answer = httpx.get(f"{base}/v1/users/reader-3/recommendations").json()
        assert answer["user_vector"] == "model" and answer["model_version"] == active
    finally:
        stop(server)
    index = VectorIndex(path=state / "qdrant")
    try:  # no collection of a version never registered
        for name in index.collections():
            assert any(name.endswith(f"-{version}") for version in versions), name
    finally:
        index.close()
    store.dispose()
