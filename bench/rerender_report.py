"""Write a finished benchmark run's ``report.md``, ``paired.json`` and figures again.

From the run's own ``results.json`` and ``per_user/`` files, with the report code of the
current checkout (the numbers are the run's; only their presentation changes):

    python bench/rerender_report.py runs/ml100k-mf-3seeds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models.benchmark import write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the benchmark's --out folder")
    args = parser.parse_args()
    results = args.run / "results.json"
    if not results.is_file():
        raise SystemExit(f"{results}: no such file (is {args.run} a benchmark run?)")
    write_results(json.loads(results.read_text()), args.run)
    print(args.run / "report.md")


if __name__ == "__main__":
    main()
