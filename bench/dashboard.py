"""How long the dashboard's pages take on a state of real size (issue 16: under 200 ms of
server time on CiteULike-size state).

Starts the embedded server on an existing state folder (a bootstrapped one: a
``bench/timeline.py`` run's ``refresh`` copy holds posted, warmed items and refreshes), asks
each page ``--repeats`` times, and reports per page the round trip over loopback (p50, p95,
max: an upper bound of the server's time) and the server's own mean time (its
``llmins_http_request_seconds`` histogram, read from /metrics).

Example:
    python bench/dashboard.py --state-dir runs/tl-cite/refresh --dataset citeulike \\
        --data-dir ../shared/data --out runs/dashboard-cite.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from services.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import EmbeddedServer, git_commit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="a bootstrapped state")
    parser.add_argument("--dataset", default="none", help="the state's LLMINS_DATASET")
    parser.add_argument("--data-dir", type=Path, help="the state's LLMINS_DATA_DIR")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    store = Store(f"sqlite:///{args.state_dir / 'llmins.sqlite'}")
    store.migrate()  # as the server does when it opens the state
    posted = [item for item in store.search_items(None, 200) if item.origin == "api"]
    warm_item = next(
        row for row, (_, origin) in sorted(store.indexed_items().items()) if origin == "dataset"
    )
    warm_id = store.item_ids([warm_item])[warm_item]
    user = store.simulated_for(posted[0].id)[0][0] if posted else None
    word = max((posted[0].text if posted else "a").split(), key=len)
    counts = store.counts()
    store.dispose()
    pages = {
        "overview": "/dashboard",
        "items, newest": "/dashboard/items",
        "items, search": f"/dashboard/items?q={word}",
        "item, warm": f"/dashboard/items/{warm_id}",
        "jobs": "/dashboard/jobs",
    }
    if posted:
        pages["item, posted"] = f"/dashboard/items/{posted[0].id}"
        pages["user"] = f"/dashboard/users/{user}"
    env = {"LLMINS_DATASET": args.dataset}
    if args.data_dir:
        env["LLMINS_DATA_DIR"] = str(args.data_dir.resolve())
    rows = {}
    server_log = args.out.with_suffix(".log")
    with (
        EmbeddedServer(args.state_dir, server_log, env) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        for name, path in pages.items():
            assert client.get(path).status_code == 200, path  # warm caches once
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                response = client.get(path)
                seconds.append(time.perf_counter() - started)
                assert response.status_code == 200, (path, response.status_code)
            rows[name] = {
                "path": path,
                "round_trip_ms": {
                    "p50": 1000 * float(np.percentile(seconds, 50)),
                    "p95": 1000 * float(np.percentile(seconds, 95)),
                    "max": 1000 * max(seconds),
                },
            }
        server = server_means(client.get("/metrics").text)
    for row in rows.values():
        route = row["path"].split("?")[0]
        template = next((t for t in server if _matches(t, route)), None)
        row["server_mean_ms"] = None if template is None else server[template]
    record = {
        "commit": git_commit(),
        "state": str(args.state_dir),
        "counts": counts,
        "repeats": args.repeats,
        "pages": rows,
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def server_means(metrics: str) -> dict[str, float]:
    """Mean server time (ms) per dashboard route template, over every request it served."""
    sums, counts = {}, {}
    for family in text_string_to_metric_families(metrics):
        if family.name != "llmins_http_request_seconds":
            continue
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if not route.startswith("/dashboard") or sample.labels.get("method") != "GET":
                continue
            if sample.name.endswith("_sum"):
                sums[route] = sample.value
            elif sample.name.endswith("_count"):
                counts[route] = sample.value
    return {route: 1000 * sums[route] / counts[route] for route in sums if counts.get(route)}


def _matches(template: str, path: str) -> bool:
    """Whether ``path`` is an instance of the route ``template`` (``{name}`` parts)."""
    parts, wanted = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(wanted) and all(
        p.startswith("{") or p == w for p, w in zip(parts, wanted, strict=True)
    )


if __name__ == "__main__":
    main()
