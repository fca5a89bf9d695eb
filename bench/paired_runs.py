"""One method in two benchmark runs, paired over the same test users: what a code change
did to it (run A minus run B), per seed and pooled, with standard errors.

The benchmark pairs methods within one run; a change to a method itself (a new choice in
its update, say) is measured by running it on both commits with the same seeds and split,
then pairing the two runs' per-user files:

    python bench/paired_runs.py runs/after runs/before --method llmins --out runs/paired.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.benchmark import (
    PER_USER_DIR,
    paired_row,
    per_user_differences,
    per_user_name,
    pooled_rows,
)

TASKS = ("overall", "cold", "warm")


def compare(run_a: Path, run_b: Path, method: str) -> list[dict]:
    """Rows of :func:`models.benchmark.paired_row` for every seed both runs hold, and a
    pooled row over seeds when there are several."""
    seeds = sorted(
        int(path.stem.rsplit("-seed", 1)[1])
        for path in (run_a / PER_USER_DIR).glob(f"{method}-seed*.npz")
        if (run_b / PER_USER_DIR / path.name).is_file()
    )
    if not seeds:
        raise SystemExit(f"no seed of {method!r} is in both {run_a} and {run_b}")
    per_seed = {
        seed: per_user_differences(
            run_a / PER_USER_DIR / per_user_name(method, seed),
            run_b / PER_USER_DIR / per_user_name(method, seed),
            TASKS,
        )
        for seed in seeds
    }
    rows = [paired_row(method, seed, columns) for seed, columns in per_seed.items()]
    return rows + pooled_rows(method, per_seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path, help="a benchmark's --out folder (the minuend)")
    parser.add_argument("run_b", type=Path, help="another, same data set and seeds")
    parser.add_argument("--method", default="llmins")
    parser.add_argument("--out", type=Path, help="JSON file for the rows")
    args = parser.parse_args()
    rows = compare(args.run_a, args.run_b, args.method)
    columns = [column for column in rows[0] if column not in ("method", "seed")]
    print(f"{args.method}: {args.run_a} minus {args.run_b}, paired over test users (± SE)")
    print("| seed | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for row in rows:
        cells = [f"{row[c]['mean']:+.4f} ± {row[c]['se']:.4f}" for c in columns]
        print(f"| {row['seed']} | " + " | ".join(cells) + " |")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
