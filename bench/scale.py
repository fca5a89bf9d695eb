"""How the service's costs grow with users and items: synthetic data at CiteULike's size and
multiples of it, candidates from Qdrant (the default warm-up).

For each factor of ``--scales``, a synthetic data set (``models.data.synthetic``: planted
topics) with CiteULike's shape times the factor: 5,551 users, 16,980 items, 37 interactions
per user. Then:

1. bootstrap, in a process of its own: content vectors (the packaged MiniLM) and a model
   version trained, indexed (items, users, user profiles) and activated as the service
   does (``services.bootstrap.install``), every training loop capped at ``--max-epochs``
   (the cost of the work per epoch and of indexing, not of the tuned epoch counts); its
   wall time and peak resident memory;
2. the embedded server on that state (``python -m services.api``): seconds until ready,
   resident and peak memory (the process that warms items and answers queries), the
   state's size on disk;
3. warm-up: ``--items`` cold test items posted one at a time, post -> warm p50/p95;
4. recommendations at ``--rate`` requests/s for ``--seconds`` (``bench/load.py``'s open
   loop, random users, each query in a random pool of all, warm and cold): p50/p99 and
   errors.

Prints and saves the records as JSON (``--out``), one per factor, each written as soon as
it is measured. A factor whose bootstrap dies (e.g. out of memory) is recorded with the
reason, and larger ones are not tried. Example:

    python bench/scale.py --scales 1,3 --out runs/scale/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import httpx
import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import drive  # noqa: E402
from replay import percentiles  # noqa: E402
from serving import EmbeddedServer, git_commit  # noqa: E402

#: Each query asks for one of these pools, drawn at random.
POOLS = ("all", "warm", "cold")
#: CiteULike-a's shape (the paper's split): users, items, interactions per user.
CITEULIKE_USERS, CITEULIKE_ITEMS, PER_USER = 5551, 16980, 37


def synthetic(scale: float, seed: int = 0):
    from models.data.synthetic import make_synthetic

    return make_synthetic(
        n_users=int(CITEULIKE_USERS * scale),
        n_items=int(CITEULIKE_ITEMS * scale),
        n_topics=8,
        interactions_per_user=PER_USER,
        seed=seed,
    )


def bootstrap(state_dir: Path, scale: float, max_epochs: int) -> dict:
    """Runs in a child process: generate, embed, train, index, activate; timings and peak RSS."""
    from models.encoders import MeanPoolEncoder
    from services.bootstrap import install
    from services.runtime import Runtime
    from services.settings import Settings

    seconds = {}
    started = time.perf_counter()
    dataset = synthetic(scale)
    seconds["data"] = time.perf_counter() - started
    started = time.perf_counter()
    content = MeanPoolEncoder().encode(list(dataset.item_texts), progress=False)
    seconds["content_vectors"] = time.perf_counter() - started
    runtime = Runtime(Settings(state_dir=state_dir))
    started = time.perf_counter()
    try:
        version = install(runtime, dataset, content, max_epochs, progress=False)
    finally:
        runtime.close()
    seconds["train_index_activate"] = time.perf_counter() - started
    return {
        "version": version,
        "data": dataset.summary(),
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def memory_mb(pid: int) -> dict:
    """Resident and peak resident memory of a process (Linux /proc)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {
        key: int(fields[name].split()[0]) / 1024
        for key, name in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))
    }


def disk_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def warm_ups(base: str, texts: list[str]) -> dict:
    """Post -> warm seconds of each item, posted one at a time (nothing else queued)."""
    latencies = []
    with httpx.Client(base_url=base, timeout=60) as client:
        for number, text in enumerate(tqdm(texts, desc="warm-ups")):
            started = time.perf_counter()
            item_id = f"scale-{number}"
            response = client.post("/v1/items", json={"id": item_id, "text": text})
            response.raise_for_status()
            while client.get(f"/v1/items/{item_id}").json()["status"] not in ("warm", "failed"):
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
    return percentiles(latencies)


def measure(scale: float, args: argparse.Namespace) -> dict:
    state = args.work_dir / f"scale-{scale:g}"
    shutil.rmtree(state, ignore_errors=True)
    record: dict = {"scale": scale, "max_epochs": args.max_epochs}
    # A process of its own: its peak memory is the bootstrap's, and an out-of-memory kill
    # ends it, not this benchmark.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        started = time.perf_counter()
        try:
            record["bootstrap"] = pool.submit(bootstrap, state, scale, args.max_epochs).result()
        except BrokenProcessPool as error:
            record["bootstrap"] = {"failed": f"the bootstrap process died ({error})"}
            return record
        record["bootstrap"]["wall_seconds"] = time.perf_counter() - started
    record["state_disk_mb"] = disk_mb(state)
    dataset = synthetic(scale)
    texts = [dataset.item_texts[i] for i in dataset.cold_test_items[: args.items]]
    server = EmbeddedServer(state, args.work_dir / f"scale-{scale:g}.server.log")
    with server as base:
        record["server"] = {"ready_seconds": server.ready_seconds, **memory_mb(server.process.pid)}
        record["warm_up_s"] = warm_ups(base, texts)
        users = np.arange(dataset.n_users)
        load = asyncio.run(drive(base, args.clients, args.seconds, args.rate, None, users, POOLS))
        record["recommendations"] = {
            key: load[key]
            for key in (
                "pools",
                "offered_per_s",
                "requests_per_s",
                "latency_ms",
                "errors",
                "requests",
            )
        }
        record["server_after"] = memory_mb(server.process.pid)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales",
        type=lambda text: [float(s) for s in text.split(",")],
        default=[1.0, 3.0, 10.0],
        help="multiples of CiteULike's size, in increasing order",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, help="state folders (default: beside --out)")
    parser.add_argument("--max-epochs", type=int, default=1, help="cap of every training loop")
    parser.add_argument("--items", type=int, default=50, help="items warmed one at a time")
    parser.add_argument("--rate", type=float, default=500, help="recommendations per second")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    args.work_dir = args.work_dir or args.out.parent / "states"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for scale in args.scales:
        record = measure(scale, args)
        record["commit"] = git_commit()
        records.append(record)
        print(json.dumps(record, indent=2), flush=True)
        args.out.write_text(json.dumps(records, indent=2))
        if "failed" in record["bootstrap"]:
            break


if __name__ == "__main__":
    main()
