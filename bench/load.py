"""Load on the running service: concurrent recommendation queries, optionally item posts.

``--clients`` connections each send GET /v1/users/{random user}/recommendations (k=20,
pool all) for ``--seconds``: back to back (closed loop), or paced so that together they
offer ``--rate`` requests per second (open loop: what a service sees from many users).
With ``--post-every S`` one more client posts a new item every S seconds and checks at the
end that each one is stored and warm. Reports requests per second, latency percentiles,
error counts, items lost, and the share of requests the server itself handled within
5/10/20/50 ms (its /metrics histogram), and the server's CPU time per query. The load
generator shares the machine with the server (2 cores here), so both are in the numbers.

    python bench/load.py --state-dir runs/replay/state --out runs/load.json --clients 50 \
        [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import EmbeddedServer, git_commit  # noqa: E402

#: CiteULike's users, whose ids are their row numbers.
USERS = np.arange(5551)


async def query_loop(
    base: str,
    users: np.ndarray,
    deadline: float,
    seed: int,
    interval: float | None,
    offset: float,
    pools: Sequence[str] = ("all",),
) -> tuple[list[float], Counter[str]]:
    """One connection's queries: back to back, or one every ``interval`` seconds.

    A paced client's latency counts from when its request was due, not when it went out,
    so a stalled server is not hidden by the client waiting for it (coordinated omission).
    Requests go over one keep-alive connection as raw HTTP/1.1: a full HTTP client costs
    more CPU per request than the server's answer, on the same two cores.
    """
    rng = np.random.default_rng(seed)
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    due = time.perf_counter() + offset
    try:
        while due < deadline:
            if interval is not None:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            started = due if interval is not None else time.perf_counter()
            user, pool = int(rng.choice(users)), str(rng.choice(pools))
            status = await recommend(reader, writer, host, user, pool)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors[str(status)] += 1
            due = due + interval if interval is not None else time.perf_counter()
    except (ConnectionError, asyncio.IncompleteReadError) as error:
        errors[type(error).__name__] += 1
    finally:
        writer.close()
    return latencies, errors


async def warm_up(base: str, users: np.ndarray, connections: int = 4) -> None:
    """Every user's recommendations once, over a few connections."""
    host, port = base.removeprefix("http://").split(":")

    async def one_connection(part: np.ndarray) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for user in part.tolist():
                await recommend(reader, writer, host, user)
        finally:
            writer.close()

    await asyncio.gather(*(one_connection(part) for part in np.array_split(users, connections)))


async def recommend(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    user: int,
    pool: str = "all",
) -> int:
    """Ask for one user's top 20 of ``pool`` over a kept-alive connection; returns the
    status."""
    path = f"/v1/users/{user}/recommendations?k=20&pool={pool}"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return await read_response(reader)


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length")
    )
    await reader.readexactly(length)
    return int(lines[0].split(" ", 2)[1])


async def post_loop(client: httpx.AsyncClient, every: float, deadline: float) -> dict:
    """Post one new item every ``every`` seconds: the accepted ids, latencies and errors."""
    posted: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    while time.perf_counter() < deadline:
        item_id = f"load-{sent}-{time.time_ns()}"
        body = {"id": item_id, "text": f"load test paper {sent} on ranking"}
        sent += 1
        started = time.perf_counter()
        try:
            response = await client.post("/v1/items", json=body)
        except httpx.HTTPError as error:
            errors[type(error).__name__] += 1
        else:
            latencies.append(time.perf_counter() - started)
            if response.status_code == 202:
                posted.append(item_id)
            else:
                errors[str(response.status_code)] += 1
        await asyncio.sleep(every)
    return {"sent": sent, "accepted": posted, "latencies": latencies, "errors": dict(errors)}


async def drive(
    base: str,
    clients: int,
    seconds: float,
    rate: float | None,
    post_every: float | None,
    users: np.ndarray = USERS,
    pools: Sequence[str] = ("all",),
) -> dict:
    """Recommendation queries for random ``users`` in random ``pools`` (and posts):
    throughput, latency, errors."""
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        before = await server_histogram(client)
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        # Paced: each connection sends every clients/rate seconds, the connections staggered.
        interval = clients / rate if rate else None
        loops = [
            query_loop(
                base, users, deadline, seed, interval, (interval or 0) * seed / clients, pools
            )
            for seed in range(clients)
        ]
        if post_every:
            loops.append(post_loop(client, post_every, deadline))
        results = await asyncio.gather(*loops)
        elapsed = time.perf_counter() - started
        latencies = np.concatenate([r[0] for r in results[:clients]]) * 1000
        errors = sum((counts for _, counts in results[:clients]), Counter())
        record = {
            "clients": clients,
            "pools": list(pools),
            "offered_per_s": rate,
            "seconds": elapsed,
            "requests": int(len(latencies)),
            "requests_per_s": len(latencies) / elapsed,
            "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 90, 95, 99)},
            "errors": dict(errors),
        }
        after = await server_histogram(client)
        total = after["+Inf"] - before.get("+Inf", 0.0)
        # What the server itself spent (middleware to response), against what clients saw.
        record["server_share_within"] = {
            f"{float(bound) * 1000:g} ms": (after[bound] - before.get(bound, 0.0)) / max(total, 1)
            for bound in ("0.005", "0.01", "0.02", "0.05")
        }
        if post_every:
            posts = results[-1]
            post_ms = np.array(posts["latencies"]) * 1000
            record["posts"] = {
                "sent": posts["sent"],
                "accepted": len(posts["accepted"]),
                "errors": posts["errors"],
                "latency_ms": {
                    f"p{q}": float(np.percentile(post_ms, q)) if len(post_ms) else None
                    for q in (50, 99)
                },
            }
            record["items"] = await check_items(client, posts["accepted"])
    return record


async def server_histogram(client: httpx.AsyncClient) -> dict[str, float]:
    """Cumulative bucket counts of the recommendation route from the server's /metrics."""
    text = (await client.get("/metrics")).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("llmins_http_request_seconds_bucket") and "recommendations" in line:
            bound = line.split('le="')[1].split('"')[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    return buckets


async def check_items(client: httpx.AsyncClient, posted: list[str], wait: float = 120) -> dict:
    """Every accepted item must be stored and, after the queue drains, warm."""
    deadline = time.perf_counter() + wait
    statuses: dict[str, str] = {}
    while time.perf_counter() < deadline:
        for item_id in posted:
            response = await client.get(f"/v1/items/{item_id}")
            statuses[item_id] = response.json()["status"] if response.status_code == 200 else "lost"
        if all(s in ("warm", "lost", "failed") for s in statuses.values()):
            break
        await asyncio.sleep(1)
    values = list(statuses.values())
    return {
        "posted": len(posted),
        "warm": values.count("warm"),
        "lost": values.count("lost"),
        "not_warm": len(values) - values.count("warm") - values.count("lost"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="a bootstrapped state")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--rate", type=float, help="total requests/s, paced (default: back to back, closed loop)"
    )
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--post-every", type=float, help="also post an item every S seconds")
    parser.add_argument(
        "--pools",
        type=lambda text: tuple(text.split(",")),
        default=("all",),
        help="pools the queries ask for, one drawn per query (all,warm,cold)",
    )
    parser.add_argument(
        "--warm-up",
        action="store_true",
        help="first ask for every user's recommendations once, unmeasured (a server that has "
        "been running remembers them)",
    )
    args = parser.parse_args()
    server = EmbeddedServer(args.state_dir, args.out.with_suffix(".server.log"))
    with server as base:
        if args.warm_up:
            asyncio.run(warm_up(base, USERS))
        cpu, own = server.cpu_seconds(), time.process_time()
        record = asyncio.run(
            drive(base, args.clients, args.seconds, args.rate, args.post_every, pools=args.pools)
        )
        # Everything the server did meanwhile (queries, posts, warm-ups) per query answered,
        # and what this load generator took from the same cores.
        cpu, own = server.cpu_seconds() - cpu, time.process_time() - own
        record["server_cpu_ms_per_request"] = 1000 * cpu / max(record["requests"], 1)
        record["client_cpu_ms_per_request"] = 1000 * own / max(record["requests"], 1)
    record["warm_up"] = args.warm_up
    record["commit"] = git_commit()
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
