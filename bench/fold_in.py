"""How good a folded-in user is: every user refitted from their training items alone.

A user the model version was not trained with is served a vector fitted to the vectors of
the items they interacted with (``models.llmins.update.fold_in``, its ridge chosen on warm
validation by ``choose_fold_in_ridge``, as bootstrap does). Here every warm user of the data
set is folded in that way from their training interactions and scored like the trained
user vectors on the warm task: validation NDCG@20 per ridge, then test Recall/NDCG@20 for
the folded and the trained vectors, and their paired difference per user with its standard
error. Prints and saves JSON (``--out``). Example:

    python bench/fold_in.py --version-dir runs/replay/state/models/VERSION \\
        --out runs/fold_in/citeulike.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from models.data import load_dataset
from models.evaluation import evaluate, evaluate_per_user, validation_ndcg
from models.llmins.refine import paired_difference
from models.llmins.release import ModelRelease
from models.llmins.update import choose_fold_in_ridge, fit_item_vectors, ridge_inverse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import data_set_parser, git_commit  # noqa: E402


def main() -> None:
    parser = data_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--version-dir", type=Path, required=True, help="a model version folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    release = ModelRelease.load(args.version_dir, tables=False)
    data = load_dataset(args.dataset, args.data_dir)
    items, users = np.array(release.items), np.array(release.users)
    ridge, by_ridge = choose_fold_in_ridge(data, items)
    # fold_in for every user at once: the item update with the sides swapped.
    swapped = data.splits["warm_train"][:, ::-1]
    everyone = np.arange(data.n_users)
    folded = fit_item_vectors(items, swapped, everyone, ridge_inverse(items, ridge))
    record = {
        "dataset": args.dataset,
        "version": release.version,
        "commit": git_commit(),
        "ridge": ridge,
        "val_warm_ndcg@20_by_ridge": by_ridge,
        "val_warm_ndcg@20_trained": validation_ndcg(data, users, items, "warm"),
        "test_warm": {
            name: evaluate(data, table, items, stage="test", tasks=("warm",))["warm"]
            for name, table in (("folded", folded), ("trained", users))
        },
    }
    # The same users under both: paired differences per user, with their standard errors.
    (_, on_folded), (_, on_trained) = (
        evaluate_per_user(data, table, items, stage="test", tasks=("warm",))["warm"]
        for table in (folded, users)
    )
    record["test_warm_folded_minus_trained"] = {
        metric: paired_difference(on_folded[metric], on_trained[metric])
        for metric in ("recall@20", "ndcg@20")
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
