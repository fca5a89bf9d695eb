"""What the refreshed user tables buy, the backbone held equal: items warmed after a
refresh by its warmer (histories, tables and new users following the new version) against
the warmer a backbone-only refresh hands on (the first version's tables, the new user
vectors).

It reads the refreshed arm of a finished ``bench/timeline.py --later`` run: the first and
the active model version of that state, the items the timeline held back, and their real
users. Both warmers warm those items from the same content vectors (every user scanned
in memory) and fit them against the same user vectors, so the difference is the tables'
alone. Reported per item: the share of its simulated users who are its real users; per
test user: Recall@20 / NDCG@20 among the held-back items (truth: all their
interactions); differences paired.

Example:
    python bench/refresh_tables.py --dataset ml-100k --data-dir ../shared/data \\
        --timeline-state runs/timeline-ml-later --later 0.5 --out runs/refresh-tables.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

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
    parser.add_argument("--later", type=float, required=True, help="the timeline's --later")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, args.data_dir)
    _, later = split_cold_items(dataset, args.later)
    runtime = Runtime(Settings(state_dir=args.timeline_state / "refresh", dataset=args.dataset))
    try:
        versions = runtime.store.versions()
        active = ModelRelease.load(versions[0].path)
        first = ModelRelease.load(versions[-1].path)
        texts = [dataset.item_texts[item] for item in later]
        content = runtime.embed(texts)
    finally:
        runtime.close()
    kept = replace(first.warmer, users=active.users, inverse=None, moments=None)
    truth = dataset.splits["cold_test"][np.isin(dataset.splits["cold_test"][:, 1], later)]
    warmers = {"followed": active.warmer, "first version's tables": kept}
    per_item, per_user = {}, {}
    for name, warmer in warmers.items():
        per_item[name], per_user[name] = measure(warmer, active, content, texts, later, truth)
    record = {
        "dataset": args.dataset,
        "commit": git_commit(),
        "versions": {"first": first.version, "active": active.version},
        "items": len(later),
        "interactions": len(truth),
        "means": {
            name: {
                "simulated_precision": float(per_item[name].mean()),
                **{metric: float(values.mean()) for metric, values in per_user[name].items()},
            }
            for name in warmers
        },
        "paired": paired(
            {**per_user["followed"], "simulated_precision": per_item["followed"]},
            {
                **per_user["first version's tables"],
                "simulated_precision": per_item["first version's tables"],
            },
        ),
    }
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def measure(
    warmer: ItemWarmer,
    release: ModelRelease,
    content: np.ndarray,
    texts: list[str],
    items: np.ndarray,
    truth: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per item, the share of real users among its simulated ones; per truth user, the
    Recall@20 / NDCG@20 of the items ranked by the warmed vectors."""
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
