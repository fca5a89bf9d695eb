"""Does the periodic refresh pay? A data set replayed as a stream through the service's own
functions, with a refresh after each wave of real interactions, against the same stream
without refreshes.

1. A state folder gets its first model version: bootstrapped from the data set (default),
   or, with ``--via-import``, as a team would start: the service empty, the data set's
   warm items and their training and validation interactions imported as CSV, and the
   first version trained from the store (``train_from_store``).
2. Every cold test item is posted and warmed. The state is copied: one copy is refreshed
   after each wave, the other never.
3. In each of ``--waves`` waves, both copies receive the same real interactions: a
   ``--share`` of each cold test item's users (shuffled once, seed 0), as
   ``POST /v1/interactions`` would record them. Then one copy is refreshed, timed.
4. Before the first wave and after each, every test user's top 20 is ranked from the
   served vectors (the user's and the items', their real items left out) within fixed
   pools: ``cold``, the posted test items (truth: their interactions not yet revealed);
   ``warm``, every other item (truth: the warm test interactions); ``all``, both (truth:
   both). Fixed, because a refresh moves a graduating item out of the index's cold flag.
5. With ``--later SHARE``, that share of the cold test items (seed 0) is held back from
   steps 2-4 and posted to both copies after the last wave: what a refresh changed for
   items that arrive after it (their candidates read the refreshed users and histories).
   Reported: their Recall@20 / NDCG@20 on all their interactions, ranked among them, and
   the share of each one's simulated users who are its real users, refresh against none.

Prints a table and saves JSON (``--out``). Example:
    python bench/timeline.py --dataset ml-100k --via-import --state-dir runs/timeline-ml \\
        --out runs/timeline-ml/timeline.json
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from models.data import load_dataset
from models.data.dataset import ColdStartDataset
from services.bootstrap import bootstrap, train_from_store
from services.imports import import_files
from services.refresh import refresh
from services.runtime import Runtime
from services.settings import NO_DATASET, Settings
from services.store import NewItem
from services.warmup import warm_up_item

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import data_set_parser, git_commit, per_user_recall_ndcg  # noqa: E402

POOLS = {"cold": True, "warm": False, "all": None}


def main() -> None:
    parser = data_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="a fresh folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--via-import", action="store_true", help="start empty, import CSV")
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--share", type=float, default=0.2, help="of each item's users per wave")
    parser.add_argument("--max-epochs", type=int, help="cap the first training (quick trials)")
    parser.add_argument(
        "--later", type=float, default=0.0, help="share of the cold items posted after the waves"
    )
    args = parser.parse_args()
    if args.waves * args.share > 1:
        parser.error("--waves x --share must not exceed 1")
    if not 0 <= args.later < 1:
        parser.error("--later must be in [0, 1)")
    if args.state_dir.exists():
        parser.error(f"{args.state_dir} exists: the timeline needs a fresh folder")

    dataset = load_dataset(args.dataset, args.data_dir)
    with_refresh, without = args.state_dir / "refresh", args.state_dir / "no-refresh"
    record: dict = {
        "dataset": args.dataset,
        "via_import": args.via_import,
        "commit": git_commit(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "waves": [],
    }
    first, later = split_cold_items(dataset, args.later)
    runtime = Runtime(state_settings(args, with_refresh))
    started = time.perf_counter()
    record["first_version"] = first_version(runtime, dataset, args)
    record["first_version_seconds"] = time.perf_counter() - started
    record["posted"] = post_cold_items(runtime, dataset, first)
    runtime.close()
    shutil.copytree(with_refresh, without, symlinks=True)
    arms = {
        "refresh": Runtime(state_settings(args, with_refresh)),
        "no refresh": Runtime(state_settings(args, without)),
    }
    streamed = np.isin(dataset.splits["cold_test"][:, 1], first)
    revealed = np.zeros(len(streamed), dtype=bool)
    order = reveal_order(dataset)
    pools = fixed_pools(arms["refresh"], dataset, first)
    try:
        for wave in range(args.waves + 1):
            entry: dict = {"wave": wave}
            if wave:
                batch = streamed & (order >= (wave - 1) * args.share)
                batch &= order < wave * args.share
                revealed |= batch
                pairs = dataset.splits["cold_test"][batch]
                entry["revealed"] = int(batch.sum())
                for runtime in arms.values():
                    runtime.store.add_interactions([(str(u), str(i)) for u, i in pairs.tolist()])
                started = time.perf_counter()
                entry["refresh_record"] = refresh(arms["refresh"], progress=False)
                entry["refresh_seconds"] = time.perf_counter() - started
            hidden = dataset.splits["cold_test"][streamed & ~revealed]
            per_user = {
                name: scores(runtime, dataset, hidden, pools) for name, runtime in arms.items()
            }
            entry["metrics"] = {
                name: {metric: float(values.mean()) for metric, values in arm.items()}
                for name, arm in per_user.items()
            }
            entry["paired"] = paired(per_user["refresh"], per_user["no refresh"])
            record["waves"].append(entry)
            print(table_row(entry), flush=True)
        if len(later):
            record["later"] = arrive_later(arms, dataset, later)
            print(later_row(record["later"]), flush=True)
    finally:
        for runtime in arms.values():
            runtime.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str))
    print(f"saved {args.out}")


def state_settings(args: argparse.Namespace, state: Path) -> Settings:
    """Both arms' settings. The copy's store names the first version's folder in the
    refreshed arm's state (paths are recorded absolute), so no refresh prunes it."""
    dataset = NO_DATASET if args.via_import else args.dataset
    return Settings(
        state_dir=state,
        dataset=dataset,
        data_dir=args.data_dir,
        refresh_interval_s=0,
        keep_previous_versions=args.waves,
    )


def first_version(runtime: Runtime, dataset: ColdStartDataset, args: argparse.Namespace) -> str:
    """Bootstrap from the data set, or import its warm part as CSV and train from the store."""
    if not args.via_import:
        return bootstrap(runtime, args.max_epochs, progress=True)
    folder = args.state_dir / "csv"
    folder.mkdir(parents=True)
    items = folder / "items.csv"
    with items.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([str(item), dataset.item_texts[item]] for item in dataset.warm_items)
    interactions = folder / "interactions.csv"
    seen = np.concatenate([dataset.splits["warm_train"], dataset.splits["warm_val"]])
    with interactions.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id"])
        writer.writerows([str(u), str(i)] for u, i in seen.tolist())
    print(json.dumps(import_files(runtime.store, items, interactions).summary()))
    return train_from_store(runtime, args.max_epochs, progress=True)


def split_cold_items(dataset: ColdStartDataset, later: float) -> tuple[np.ndarray, np.ndarray]:
    """The cold test items posted at the start, and the ``later`` share held back (seed 0)."""
    items = dataset.cold_test_items
    held_back = np.random.default_rng(0).random(len(items)) < later
    return items[~held_back], items[held_back]


def post_cold_items(runtime: Runtime, dataset: ColdStartDataset, items: np.ndarray) -> dict:
    """Post the cold test ``items`` under their data-set ids and warm them; timings."""
    runtime.store.submit_items([NewItem(str(i), dataset.item_texts[i]) for i in items])
    seconds = []
    for item in tqdm(items, desc="warm-up"):
        started = time.perf_counter()
        warm_up_item(runtime, str(item))
        seconds.append(time.perf_counter() - started)
    return {"items": len(items), "warm_up_p50_s": float(np.median(seconds))}


def fixed_pools(
    runtime: Runtime, dataset: ColdStartDataset, posted: np.ndarray
) -> dict[str, np.ndarray]:
    """The rows of the ``posted`` cold test items (``cold``) and of every other item
    served (``warm``), as they stand before the first wave."""
    store = runtime.store
    cold = {store.get_item(str(item)).index for item in posted}
    served = sorted(store.indexed_items())
    return {
        "cold": np.array(sorted(cold), dtype=np.int64),
        "warm": np.array([row for row in served if row not in cold], dtype=np.int64),
    }


def reveal_order(dataset: ColdStartDataset) -> np.ndarray:
    """For each cold test interaction, its user's place in the item's shuffled users as a
    share in [0, 1): a wave reveals the interactions whose share falls in its slice."""
    rng = np.random.default_rng(0)
    pairs = dataset.splits["cold_test"]
    share = np.zeros(len(pairs))
    for item in np.unique(pairs[:, 1]):
        rows = np.flatnonzero(pairs[:, 1] == item)
        share[rows[rng.permutation(len(rows))]] = np.arange(len(rows)) / len(rows)
    return share


def paired(refreshed: dict, unrefreshed: dict) -> dict:
    """Refreshed minus never refreshed, per metric: mean and standard error of the per-user
    differences (the same users, the same truth)."""
    out = {}
    for metric, values in refreshed.items():
        difference = values - unrefreshed[metric]
        error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0
        out[metric] = [float(difference.mean()), float(error)]
    return out


def arrive_later(arms: dict[str, Runtime], dataset: ColdStartDataset, items: np.ndarray) -> dict:
    """Post the held-back ``items`` to every arm, warm them, and compare what each arm's
    model made of them: ranking metrics per user (truth: all their interactions) and the
    share of real users among each item's simulated ones, paired refresh minus none."""
    truth = dataset.splits["cold_test"][np.isin(dataset.splits["cold_test"][:, 1], items)]
    real: dict[int, set[int]] = {}
    for user, item in truth.tolist():
        real.setdefault(item, set()).add(user)
    per_user, precision = {}, {}
    for name, runtime in arms.items():
        post_cold_items(runtime, dataset, items)
        rows = np.array([runtime.store.get_item(str(item)).index for item in items])
        per_user[name] = pool_scores(runtime, {"later": truth}, {"later": rows})
        precision[name] = np.array(
            [
                np.mean(
                    [int(u) in real[int(item)] for u, _ in runtime.store.simulated_for(str(item))]
                )
                for item in items
            ]
        )
    out = {
        "items": len(items),
        "interactions": len(truth),
        "metrics": {
            name: {metric: float(values.mean()) for metric, values in arm.items()}
            for name, arm in per_user.items()
        },
        "simulated_precision": {name: float(values.mean()) for name, values in precision.items()},
        "paired": paired(
            {**per_user["refresh"], "simulated_precision": precision["refresh"]},
            {**per_user["no refresh"], "simulated_precision": precision["no refresh"]},
        ),
    }
    return out


def scores(
    runtime: Runtime, dataset: ColdStartDataset, hidden: np.ndarray, pools: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-user Recall@20 and NDCG@20 in the ``cold``, ``warm`` and ``all`` pools.

    The pools are fixed item sets (rows), not the index's flags: a refresh moves a posted
    item that graduates out of the ``cold`` flag, and ranking by the flag would then count
    its hidden interactions as misses.
    """
    warm_truth = dataset.splits["warm_test"]
    truths = {"cold": hidden, "warm": warm_truth, "all": np.concatenate([warm_truth, hidden])}
    allowed = {**pools, "all": np.concatenate(list(pools.values()))}
    return pool_scores(runtime, truths, allowed)


def pool_scores(
    runtime: Runtime, truths: dict[str, np.ndarray], pools: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-user Recall@20 and NDCG@20 per pool (users sorted), from each truth user's
    ranking of the pool's rows as the served vectors give it (inner product of the user's
    and the items' vectors in the active version's collections, their real items left out).
    """
    store, index = runtime.store, runtime.index
    users = np.unique(np.concatenate(list(truths.values()))[:, 0])
    rows = {int(user): store.user_index(str(user)) for user in users.tolist()}
    users = np.array([user for user in users.tolist() if rows[user] is not None])
    everything = np.unique(np.concatenate(list(pools.values())))
    ids = store.item_ids(everything.tolist())
    items = {row: int(ids[row]) for row in everything.tolist()}
    item_vectors = index.vectors("items", everything.tolist())
    user_vectors = index.vectors("users", [rows[user] for user in users.tolist()])
    table = user_vectors @ item_vectors.T
    column = {row: at for at, row in enumerate(everything.tolist())}
    for at, user in enumerate(users.tolist()):
        seen = [column[row] for row in store.seen_item_indices(str(user)) if row in column]
        table[at, seen] = -np.inf
    out = {}
    for pool, truth in truths.items():
        allowed = pools[pool]
        columns = np.array([column[row] for row in allowed.tolist()])
        ranked = {}
        for at, user in enumerate(users.tolist()):
            row_scores = table[at, columns]
            best = np.argsort(-row_scores, kind="stable")[:20]
            ranked[user] = [items[int(allowed[b])] for b in best if np.isfinite(row_scores[b])]
        _, out[f"{pool}_recall@20"], out[f"{pool}_ndcg@20"] = per_user_recall_ndcg(ranked, truth)
    return out


def table_row(entry: dict) -> str:
    cells = [f"wave {entry['wave']}"]
    for name, metrics in entry["metrics"].items():
        cells.append(
            f"{name}: cold R {metrics['cold_recall@20']:.4f} N {metrics['cold_ndcg@20']:.4f}"
            f" / warm R {metrics['warm_recall@20']:.4f} / all R {metrics['all_recall@20']:.4f}"
        )
    if "refresh_seconds" in entry:
        mean, error = entry["paired"]["cold_recall@20"]
        cells.append(f"cold R refresh - none {mean:+.4f} ± {error:.4f}")
        cells.append(f"refresh {entry['refresh_seconds']:.1f} s")
    return " | ".join(cells)


def later_row(later: dict) -> str:
    cells = [f"later ({later['items']} items)"]
    for name, metrics in later["metrics"].items():
        cells.append(
            f"{name}: R {metrics['later_recall@20']:.4f} N {metrics['later_ndcg@20']:.4f}"
            f" simulated precision {later['simulated_precision'][name]:.4f}"
        )
    for metric in ("later_recall@20", "simulated_precision"):
        mean, error = later["paired"][metric]
        cells.append(f"{metric} refresh - none {mean:+.4f} ± {error:.4f}")
    return " | ".join(cells)


if __name__ == "__main__":
    main()
