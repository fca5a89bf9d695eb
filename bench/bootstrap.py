"""Time the service's first start: ``python -m services.worker bootstrap`` on a fresh state.

Runs the worker command a user runs (a process of its own, so imports and the content
vectors' cache read count), on ``--dataset`` with the default configuration, then reads the
version it activated: the manifest's seconds (backbone, warmer) and where the warmer's time
went (``warmer_seconds_by_stage``: subtowers, text-to-users, DeepMusic, signals...). The
issue's target is a bootstrap of at most 20 minutes on a 2-core machine. Prints and saves
JSON (``--out``). Example:
    python bench/bootstrap.py --state-dir runs/boot/state --out runs/boot/bootstrap.json
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from models.llmins.release import MANIFEST

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import ROOT, data_set_parser, git_commit  # noqa: E402


def main() -> None:
    parser = data_set_parser(__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True, help="must not exist yet")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-epochs", type=int, help="cap every training loop (quick trials)")
    args = parser.parse_args()
    if args.state_dir.exists():
        raise SystemExit(f"{args.state_dir} exists: a bootstrap is timed on a fresh state")
    record = {"dataset": args.dataset, "commit": git_commit(), "max_epochs": args.max_epochs}
    record.update(run_bootstrap(args.dataset, args.data_dir, args.state_dir, args.max_epochs))
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))


def run_bootstrap(
    dataset: str, data_dir: Path, state_dir: Path, max_epochs: int | None = None
) -> dict:
    """The worker's bootstrap in a child process: its wall time, peak memory and the
    activated version's own timings."""
    command = [sys.executable, "-m", "services.worker", "bootstrap", "--no-progress"]
    if max_epochs is not None:
        command += ["--max-epochs", str(max_epochs)]
    environment = {
        **os.environ,
        "LLMINS_DATASET": dataset,
        "LLMINS_DATA_DIR": str(Path(data_dir).absolute()),
        "LLMINS_STATE_DIR": str(Path(state_dir).absolute()),
    }
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=environment, check=True)
    wall = time.perf_counter() - started
    manifests = list((Path(state_dir) / "models").glob(f"*/{MANIFEST}"))
    if len(manifests) != 1:
        raise SystemExit(f"expected one model version in {state_dir}, found {len(manifests)}")
    manifest = json.loads(manifests[0].read_text())
    return {
        "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "version": manifest["version"],
        "seconds": manifest["seconds"],
        "warmer_seconds_by_stage": manifest["warmer_seconds_by_stage"],
    }


if __name__ == "__main__":
    main()
