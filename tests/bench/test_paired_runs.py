"""bench/paired_runs.py: one method in two runs, paired over the same users."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from models.benchmark import PER_USER_DIR, save_per_user
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "paired_runs.py"


def write_run(folder, seed: int, users: dict, recall: dict, ndcg: dict) -> None:
    per_user = {
        task: (users[task], {"recall@20": recall[task], "ndcg@20": ndcg[task]}) for task in users
    }
    save_per_user(per_user, folder / PER_USER_DIR / f"llmins-seed{seed}.npz")


def load_script():
    spec = importlib.util.spec_from_file_location("paired_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_runs_are_paired_user_by_user_per_seed_and_pooled(
    tmp_path, monkeypatch, capsys
) -> None:
    rng = np.random.default_rng(0)
    users = {task: np.arange(40) for task in ("overall", "cold", "warm")}
    differences = []
    for seed in (0, 1):
        before = {task: rng.random(40) for task in users}
        shift = {task: rng.normal(0.05, 0.02, 40) for task in users}
        after = {task: before[task] + shift[task] for task in users}
        write_run(tmp_path / "after", seed, users, after, after)
        write_run(tmp_path / "before", seed, users, before, before)
        differences.append(shift["cold"])
    out = tmp_path / "paired.json"
    argv = ["paired_runs.py", str(tmp_path / "after"), str(tmp_path / "before"), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    load_script().main()
    assert "| pooled |" in capsys.readouterr().out
    rows = {row["seed"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {0, 1, "pooled"}
    for seed in (0, 1):
        cell = rows[seed]["cold recall@20"]
        assert cell["mean"] == pytest.approx(differences[seed].mean())
        assert cell["se"] == pytest.approx(differences[seed].std(ddof=1) / np.sqrt(40))
    pooled = np.concatenate(differences)
    assert rows["pooled"]["cold recall@20"]["mean"] == pytest.approx(pooled.mean())
    assert rows["pooled"]["warm ndcg@20"]["users"] == 80


def test_runs_over_different_users_are_refused(tmp_path) -> None:
    values = {task: np.ones(3) for task in ("overall", "cold", "warm")}
    write_run(tmp_path / "a", 0, {t: np.arange(3) for t in values}, values, values)
    write_run(tmp_path / "b", 0, {t: np.arange(1, 4) for t in values}, values, values)
    with pytest.raises(ValueError, match="different overall users"):
        load_script().compare(tmp_path / "a", tmp_path / "b", "llmins")
