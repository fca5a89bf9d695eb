"""bench/bootstrap.py: the worker's bootstrap timed on a fresh state, with its stages."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "bootstrap.py"


def test_a_fresh_bootstrap_is_timed_with_where_its_warmer_spent_it(data_dir, tmp_path) -> None:
    out = tmp_path / "bootstrap.json"
    command = [sys.executable, str(SCRIPT), "--dataset", "ml-100k", "--data-dir", str(data_dir)]
    command += ["--state-dir", str(tmp_path / "state"), "--out", str(out), "--max-epochs", "1"]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert record["dataset"] == "ml-100k" and record["max_epochs"] == 1
    stages = record["warmer_seconds_by_stage"]
    assert {"collaborative subtower", "text-to-users (fine-tuned)", "deepmusic"} <= set(stages)
    assert sum(stages.values()) <= record["seconds"]["warmer"]
    assert record["seconds"]["backbone"] + record["seconds"]["warmer"] < record["wall_seconds"]
    assert record["peak_rss_mb"] > 0
    # A second timing on the same state would time nothing: it is refused.
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    assert again.returncode != 0 and "fresh state" in again.stderr
