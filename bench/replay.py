"""Replay a data set's cold test items through the running service and score its answers.

Starts the embedded server (``python -m services.api``) on a state folder (bootstrapping it
on first use), then:

1. posts the first ``--sequential`` cold test items one at a time, each waited for until
   warm: the warm-up latency of an idle service (post -> warm, seen by the client);
2. posts the rest in one burst: throughput (items warm per second) and latency under load;
3. asks the API for every test user's top 20 (pool ``all`` and ``cold``) and computes
   overall and cold Recall@20 / NDCG@20 from those answers alone;
4. computes the same metrics offline from the same model version (the item warmer on the
   same items, ``models.evaluation``): the two must agree.

The first run on a state folder bootstraps it (training at the tuned settings, as
``bash scripts/run.sh`` does, on ``--dataset``). Prints and saves JSON (``--out``). Example:
    python bench/replay.py --state-dir runs/replay/state --out runs/replay/replay.json
    python bench/replay.py --dataset ml-100k --state-dir runs/replay-ml/state \\
        --out runs/replay-ml/replay.json
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
from tqdm.auto import tqdm

from models.data import load_dataset
from models.encoders import MeanPoolEncoder, encode_cached
from models.evaluation import evaluate
from models.llmins.release import ModelRelease
from services.settings import get_settings
from services.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import EmbeddedServer, data_set_parser, git_commit, recall_ndcg  # noqa: E402


def main() -> None:
    settings = get_settings()
    parser = data_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sequential", type=int, default=100, help="items posted one by one")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, args.data_dir)
    items = dataset.cold_test_items
    server = EmbeddedServer(
        args.state_dir,
        args.out.with_suffix(".server.log"),
        {"LLMINS_DATA_DIR": str(args.data_dir), "LLMINS_DATASET": args.dataset},
    )
    record: dict = {
        "dataset": args.dataset,
        "candidates": settings.candidates,
        "items": int(len(items)),
        "commit": git_commit(),
    }
    with server as base, httpx.Client(base_url=base, timeout=30) as client:
        record["ready_seconds"] = server.ready_seconds
        record["sequential"] = post_sequentially(client, dataset, items[: args.sequential])
        record["burst"] = post_burst(client, dataset, items[args.sequential :])
        answers = recommendations(client, dataset)
        record["api"] = score(dataset, answers)
        record["recommendation_latency_ms"] = answers.pop("latency_ms")
    record["offline"] = offline_metrics(args.state_dir, dataset, items, settings.cache_dir)
    record["difference"] = {
        key: record["api"][key] - record["offline"][key] for key in record["offline"]
    }
    print(json.dumps(record, indent=2))
    args.out.write_text(json.dumps(record, indent=2))


def post(client: httpx.Client, dataset, item: int) -> None:
    response = client.post("/v1/items", json={"id": str(item), "text": dataset.item_texts[item]})
    if response.status_code not in (200, 202):
        raise SystemExit(f"POST item {item}: {response.status_code} {response.text}")


def status(client: httpx.Client, item: int) -> dict:
    return client.get(f"/v1/items/{item}").json()


def post_sequentially(client: httpx.Client, dataset, items: np.ndarray) -> dict:
    """Post -> warm latency with nothing else queued, as the client sees it."""
    latencies, processing = [], []
    for item in tqdm(items, desc="sequential"):
        started = time.perf_counter()
        post(client, dataset, int(item))
        while (body := status(client, int(item)))["status"] not in ("warm", "failed"):
            time.sleep(0.005)
        latencies.append(time.perf_counter() - started)
        processing.append(sum((body["timings"] or {}).values()))
    return {"latency_s": percentiles(latencies), "processing_s": percentiles(processing)}


def post_burst(client: httpx.Client, dataset, items: np.ndarray) -> dict:
    """Everything at once: how fast the queue drains, and what waiting costs."""
    started = time.perf_counter()
    for item in tqdm(items, desc="post"):
        post(client, dataset, int(item))
    posted = time.perf_counter() - started
    pending = {int(i) for i in items}
    bar = tqdm(total=len(pending), desc="warm")
    bodies = {}
    while pending:
        for item in list(pending):
            body = status(client, item)
            if body["status"] in ("warm", "failed"):
                pending.discard(item)
                bodies[item] = body
                bar.update()
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    waits = [
        (
            datetime.fromisoformat(b["warmed_at"]) - datetime.fromisoformat(b["created_at"])
        ).total_seconds()
        for b in bodies.values()
        if b["warmed_at"]
    ]
    return {
        "items_per_s": len(items) / elapsed,
        "post_seconds": posted,
        "seconds": elapsed,
        "failed": sum(b["status"] != "warm" for b in bodies.values()),
        "created_to_warm_s": percentiles(waits),
        "processing_s": percentiles([sum((b["timings"] or {}).values()) for b in bodies.values()]),
    }


def recommendations(client: httpx.Client, dataset) -> dict:
    """Each test user's top 20 from the API, per pool."""
    truth = np.concatenate([dataset.splits["warm_test"], dataset.splits["cold_test"]])
    users = np.unique(truth[:, 0])
    answers: dict = {"all": {}, "cold": {}}
    latencies = []
    for user in tqdm(users, desc="recommendations"):
        for pool in ("all", "cold"):
            started = time.perf_counter()
            body = client.get(f"/v1/users/{user}/recommendations", params={"k": 20, "pool": pool})
            latencies.append(time.perf_counter() - started)
            ids = [r["item_id"] for r in body.json()["items"]]
            if not all(i.isdigit() for i in ids):
                raise SystemExit(
                    f"the state serves items the replay did not post ({ids}): the comparison "
                    "with the offline ranking needs a state of its own (a fresh --state-dir)"
                )
            answers[pool][int(user)] = [int(i) for i in ids]
    answers["latency_ms"] = percentiles(np.array(latencies) * 1000)
    return answers


def score(dataset, answers: dict) -> dict:
    """Recall@20 (hits / |truth|) and NDCG@20 per task, as models.evaluation defines them."""
    tasks = {
        "overall": (
            "all",
            np.concatenate([dataset.splits["warm_test"], dataset.splits["cold_test"]]),
        ),
        "cold": ("cold", dataset.splits["cold_test"]),
    }
    out = {}
    for task, (pool, pairs) in tasks.items():
        out[f"{task}_recall@20"], out[f"{task}_ndcg@20"] = recall_ndcg(answers[pool], pairs)
    return out


def offline_metrics(state_dir: Path, dataset, items: np.ndarray, cache_dir: Path) -> dict:
    """The same model version scored offline on the same items (no API in between)."""
    store = Store(f"sqlite:///{state_dir / 'llmins.sqlite'}")
    release = ModelRelease.load(store.active_version().path)
    store.dispose()
    content = encode_cached(MeanPoolEncoder(), dataset.item_texts, cache_dir, progress=False)
    table = release.items.copy()
    texts = [dataset.item_texts[item] for item in items]
    table[items] = release.warmer.warm(content[items], texts).vectors
    metrics = evaluate(dataset, release.users, table, stage="test", tasks=("overall", "cold"))
    return {
        f"{task}_{name}": metrics[task][name]
        for task in ("overall", "cold")
        for name in ("recall@20", "ndcg@20")
    }


def percentiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
        "n": int(len(values)),
    }


if __name__ == "__main__":
    main()
