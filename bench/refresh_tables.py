"""What the refreshed user tables buy, the backbone held equal: items warmed after a
refresh by its warmer (histories, tables and new users following the new version) against
the warmer a backbone-only refresh hands on (the first version's tables, the new user
vectors), and, where the refresh refitted the text-to-users heads
(``LLMINS_REFRESH_REFITS_TEXT_TO_USERS``) or the collaborative subtower's content map
(``LLMINS_REFRESH_REFITS_COLLABORATIVE_MAP``), against the followed warmer with the first
version's heads or map (what each refit buys).

It reads the refreshed arm of a finished ``bench/timeline.py`` run: the first and the
active model version of that state. ``--items later`` warms the items the timeline held
back (``--later``, test items); ``--items validation`` the data set's cold validation
items, which no run posted (where a choice about the refresh may be made). Both warmers
warm them from the same content vectors (every user scanned in memory) and fit them
against the same user vectors, so the difference is the tables' alone; the first version
as it served before any refresh is reported beside them. Per item: the share of its
simulated users who are its real users; per user of those items: Recall@20 / NDCG@20
among them (truth: all their interactions); differences paired.

Example:
    python bench/refresh_tables.py --dataset ml-100k --data-dir ../shared/data \\
        --timeline-state runs/timeline-ml-later --items later --later 0.5 \\
        --out runs/refresh-tables.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from models.data import DATASETS, load_dataset
from models.llmins.online import ItemWarmer
from models.llmins.release import ModelRelease
from services.runtime import Runtime
from services.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import git_commit, per_user_recall_ndcg  # noqa: E402
from timeline import paired, split_cold_items  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--timeline-state", type=Path, required=True, help="its --state-dir")
    parser.add_argument("--items", choices=("later", "validation"), required=True)
    parser.add_argument("--later", type=float, help="the timeline's --later (--items later)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.items == "later" and not args.later:
        parser.error("--items later needs the timeline's --later")

    dataset = load_dataset(args.dataset, args.data_dir)
    if args.items == "later":
        items = split_cold_items(dataset, args.later)[1]
        pairs = dataset.splits["cold_test"]
    else:
        items, pairs = dataset.cold_val_items, dataset.splits["cold_val"]
    truth = pairs[np.isin(pairs[:, 1], items)]
    runtime = Runtime(Settings(state_dir=args.timeline_state / "refresh", dataset=args.dataset))
    try:
        versions = runtime.store.versions()
        active = ModelRelease.load(versions[0].path)
        first = ModelRelease.load(versions[-1].path)
        texts = [dataset.item_texts[item] for item in items]
        content = runtime.embed(texts)
    finally:
        runtime.close()
    kept = replace(first.warmer, users=active.users, inverse=None, moments=None)
    warmers = {
        "followed": (active.warmer, active),
        "first version's tables": (kept, active),
        "no refresh": (first.warmer, first),
    }
    refitted = active.warmer.text_to_users is not None
    if refitted and "refit" in active.warmer.text_to_users.info:
        first_heads = replace(active.warmer, text_to_users=first.warmer.text_to_users)
        warmers["first version's text-to-users heads"] = (first_heads, active)
    first_map = first.warmer.content_maps.get("collaborative")
    active_map = active.warmer.content_maps.get("collaborative")
    if first_map is not None and not _same_network(first_map.network, active_map.network):
        first_maps = {**active.warmer.content_maps, "collaborative": first_map}
        first_collaborative = replace(active.warmer, content_maps=first_maps)
        warmers["first version's collaborative map"] = (first_collaborative, active)
    per_item, per_user = {}, {}
    for name, (warmer, release) in warmers.items():
        per_item[name], per_user[name] = measure(warmer, release, content, texts, items, truth)
    record = {
        "dataset": args.dataset,
        "items_measured": args.items,
        "commit": git_commit(),
        "versions": {"first": first.version, "active": active.version},
        "items": len(items),
        "interactions": len(truth),
        "means": {
            name: {
                "simulated_precision": float(per_item[name].mean()),
                **{metric: float(values.mean()) for metric, values in per_user[name].items()},
            }
            for name in warmers
        },
        "paired": {
            f"followed - {other}": paired(
                {**per_user["followed"], "simulated_precision": per_item["followed"]},
                {**per_user[other], "simulated_precision": per_item[other]},
            )
            for other in warmers
            if other != "followed"
        },
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def _same_network(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    """Whether two content maps' networks hold the same weights (no refit changed it)."""
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def measure(
    warmer: ItemWarmer,
    release: ModelRelease,
    content: np.ndarray,
    texts: list[str],
    items: np.ndarray,
    truth: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per item, the share of real users among its simulated ones; per truth user, the
    Recall@20 / NDCG@20 of the items ranked by the warmed vectors and ``release``'s users."""
    warmed = warmer.warm(content, texts)
    real: dict[int, set[int]] = {}
    for user, item in truth.tolist():
        real.setdefault(item, set()).add(user)
    rows = {user: row for row, user in enumerate(release.user_ids)}
    precision = np.array(
        [
            np.mean([int(release.user_ids[user]) in real[int(item)] for user in kept])
            for item, kept in zip(items.tolist(), warmed.kept, strict=True)
        ]
    )
    scores = np.asarray(release.users) @ warmed.vectors.T
    ranked = {}
    for user in np.unique(truth[:, 0]).tolist():
        best = np.argsort(-scores[rows[str(user)]], kind="stable")[:20]
        ranked[user] = [int(items[b]) for b in best]
    _, recall, ndcg = per_user_recall_ndcg(ranked, truth)
    return precision, {"recall@20": recall, "ndcg@20": ndcg}


if __name__ == "__main__":
    main()
