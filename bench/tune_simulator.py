"""Choose the simulator's learning rate on validation lists: per-item AUC among candidates.

Tunes the LM simulator (MiniLM + LoRA by default) on list prompts of warm items playing cold
ones, exactly as the benchmark does, then scores the 30 best users by history similarity of
cold *validation* items and reports how well P(Yes) separates their real users from the rest
(per-item AUC, precision@15) against the history similarity itself:

    python bench/tune_simulator.py --lr 3e-3 --examples 1000 --items 100 --threads 1 \\
        [--negatives random] --out docs/sweeps/simulator-lr.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models.llmins.filtering import top_users
from models.llmins.pipeline import SimulatorTraining, Workbench
from models.llmins.refine import per_item_auc
from models.llmins.simulator import SimulatorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citeulike import dataset_and_content  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-4])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--negatives", choices=("lists", "random"), default="lists")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data, content = dataset_and_content(threads=args.threads)
    dummy = np.zeros((data.n_users, 1), dtype=np.float32)  # no backbone needed here
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(data.cold_val_items), args.items, replace=False))
    results = []
    for lr in args.lr:
        bench = Workbench(data, content, dummy, np.zeros((data.n_items, 1), np.float32),
                          simulator=SimulatorConfig(lr=lr), progress=False)  # fmt: skip
        history = bench.history.scores(data.cold_val_items[rows])
        candidates = top_users(history, args.candidates)
        truth = bench.truth("val")
        labels = np.array([[u in truth[r] for u in candidates[i]] for i, r in enumerate(rows)])
        training = SimulatorTraining(examples=args.examples, negatives=args.negatives)
        logits = bench.lm_logits(training, "val", rows, candidates)
        baseline = np.take_along_axis(history, candidates, axis=1)
        row = {
            "lr": lr,
            "examples": args.examples,
            "negatives": args.negatives,
            "final_loss": bench.simulator(training).training_info["final_loss"],
            "lm_auc": float(np.nanmean(per_item_auc(logits, labels))),
            "history_auc": float(np.nanmean(per_item_auc(baseline, labels))),
            "seconds": {k: round(v, 1) for k, v in bench.seconds.items()},
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
