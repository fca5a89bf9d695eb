"""README's "Your own data" walkthrough, command by command, as real processes: import a
generated CSV into a service started empty, train, serve, post a cold item, get it
recommended. The language model is the packaged MiniLM; training epochs are capped."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np

from services.simulator.process import free_port, stop
from tests.conftest import REPO_ROOT
from tests.factories import planted_dataset
from tests.services.test_processes import start, wait_ready, wait_warm


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def worker(env: dict[str, str], *arguments: str) -> str:
    """Run ``python -m services.worker ARGUMENTS`` to its end; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "services.worker", *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_train_serve_post_recommend(tmp_path) -> None:
    data = planted_dataset()
    cold = int(data.cold_test_items[0])
    topic = [f"topic-{item % 8}" for item in range(data.n_items)]
    items = write_csv(
        tmp_path / "items.csv",
        ["id", "text", "categories"],
        [[f"doc-{i}", data.item_texts[i], topic[i]] for i in range(data.n_items) if i != cold],
    )
    seen = np.concatenate([data.splits[part] for part in ("warm_train", "warm_val", "cold_val")])
    interactions = write_csv(
        tmp_path / "interactions.csv",
        ["user_id", "item_id"],
        [[f"reader-{u}", f"doc-{i}"] for u, i in seen.tolist()],
    )
    env = {
        "LLMINS_DATASET": "none",
        "LLMINS_STATE_DIR": str(tmp_path / "state"),
    }

    imported = worker(env, "import", "--items", str(items), "--interactions", str(interactions))
    assert '"new_interactions": ' + str(len(seen)) in imported
    assert "active model version: v" in worker(env, "train", "--max-epochs", "3", "--no-progress")

    port = free_port()
    server = start(
        [sys.executable, "-m", "services.api", "--port", str(port)], env, tmp_path / "server.log"
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server, tmp_path / "server.log", minutes=5)
        assert httpx.get(f"{base}/readyz").json()["fallback"] is None
        posted = httpx.post(
            f"{base}/v1/items",
            json={"id": "brand-new", "text": data.item_texts[cold], "categories": ["fresh"]},
        )
        assert posted.status_code == 202, posted.text
        body = wait_warm(base, "brand-new", seconds=120)
        users = [user["user_id"] for user in body["simulated_users"]]
        assert users and all(user.startswith("reader-") for user in users)
        answer = httpx.get(
            f"{base}/v1/users/{users[0]}/recommendations", params={"pool": "cold", "k": 20}
        ).json()
        assert answer["user_vector"] == "model" and answer["fallback"] is None
        assert "brand-new" in [r["item_id"] for r in answer["items"]]
        imported_item = httpx.get(f"{base}/v1/items/doc-0").json()
        assert imported_item["status"] == "warm" and imported_item["categories"] == ["topic-0"]
    finally:
        stop(server)
