"""How fast the import command reads a catalogue and an interaction log, and in how much
memory, as the log grows.

For each ``--scales`` multiple, writes the data set's items and ``scale`` copies of all its
interactions (each copy under its own user ids) as CSV, then runs
``python -m services.worker import`` into a fresh state folder (SQLite) under GNU time:
wall seconds, rows per second and the process's peak resident memory. Bounded memory means
the peak stays flat while the rows grow. Prints and saves JSON (``--out``). Example:
    python bench/import_speed.py --dataset citeulike --scales 1,10 --out runs/import.json
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from models.data import load_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import ROOT, data_set_parser, git_commit  # noqa: E402


def main() -> None:
    parser = data_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10", help="copies of the interaction log")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, args.data_dir)
    pairs = np.concatenate(list(dataset.splits.values()))
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        items = folder / "items.csv"
        with items.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "text"])
            writer.writerows([f"i{item}", text] for item, text in enumerate(dataset.item_texts))
        for scale in (int(s) for s in args.scales.split(",")):
            log = folder / f"interactions-{scale}.csv"
            with log.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["user_id", "item_id"])
                for copy in range(scale):
                    writer.writerows([f"u{copy}-{u}", f"i{i}"] for u, i in pairs.tolist())
            runs.append(timed_import(folder / f"state-{scale}", items, log, scale, len(pairs)))
            print(json.dumps(runs[-1]), flush=True)
            log.unlink()
    record = {"dataset": args.dataset, "commit": git_commit(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"saved {args.out}")


def timed_import(state: Path, items: Path, log: Path, scale: int, pairs: int) -> dict:
    command = [
        "/usr/bin/time",
        "-f",
        "%M %e",
        sys.executable,
        "-m",
        "services.worker",
        "import",
        "--no-progress",
        "--items",
        str(items),
        "--interactions",
        str(log),
    ]
    env = {**os.environ, "LLMINS_DATASET": "none", "LLMINS_STATE_DIR": str(state)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    peak_kb, seconds = done.stderr.strip().splitlines()[-1].split()
    rows = scale * pairs
    return {
        "scale": scale,
        "interaction_rows": rows,
        "log_mb": log.stat().st_size / 2**20,
        "seconds": float(seconds),
        "rows_per_s": rows / float(seconds),
        "peak_rss_mb": int(peak_kb) / 1024,
        "database_mb": (state / "llmins.sqlite").stat().st_size / 2**20,
        "summary": json.loads(done.stdout),
    }


if __name__ == "__main__":
    main()
