"""The benchmark worker command end to end on a small CSV data set, and its argument errors."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from models.baselines import GENERATOR_GRID
from models.data.dataset import SPLIT_NAMES, ColdStartDataset
from models.data.readers import read_pairs_csv
from models.evaluation import evaluate
from services.worker.cli import _seeds, main
from tests.conftest import REPO_ROOT
from tests.factories import planted_dataset


@pytest.fixture(scope="module")
def csv_dataset(tmp_path_factory):
    """The planted data set written as the generic CSV format (string ids)."""
    folder = tmp_path_factory.mktemp("csvdata")
    data = planted_dataset()
    with (folder / "items.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "text"])
        for item, text in enumerate(data.item_texts):
            writer.writerow([f"i{item}", text])
    pairs = np.concatenate(list(data.splits.values()))
    with (folder / "interactions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item"])
        writer.writerows([(f"u{u}", f"i{i}") for u, i in pairs])
    return folder


def test_benchmark_writes_results_report_and_exports(csv_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LLMINS_CACHE_DIR", str(tmp_path / "cache"))
    from services.settings import get_settings

    get_settings.cache_clear()
    out = tmp_path / "run"
    main(
        [
            "benchmark", "--dataset", "csv", "--data-dir", str(csv_dataset),
            "--interactions", "interactions.csv", "--items", "items.csv",
            "--backbone", "lightgcn", "--methods", "backbone,deepmusic,aldi,knn,llmins",
            "--seeds", "2", "--simulator-examples", "32",
            "--dim", "16", "--max-epochs", "10", "--out", str(out), "--export-embeddings",
            "--no-progress",
        ]
    )  # fmt: skip
    records = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["seed"]) for r in records] == [
        (m, s) for s in (0, 1) for m in ("backbone", "deepmusic", "aldi", "knn", "llmins")
    ]
    for record in records:
        assert record["backbone"] == "lightgcn" and record["dataset"] == "csv"
        for task in ("overall", "cold", "warm"):
            assert 0.0 <= record[task]["recall@20"] <= 1.0
        assert {"load", "encode", "backbone", f"fit:{record['method']}"} <= set(record["seconds"])
        assert record["versions"]["torch"].startswith("2.13.0")
        assert len(record["data"]["fingerprint"]) == 16
    # Each baseline chose its settings on this data set's cold validation items.
    for record in (r for r in records if r["method"] in ("deepmusic", "aldi")):
        scores = [tried["val_cold_ndcg@20"] for tried in record["method_info"]["grid"]]
        assert len(scores) == len(GENERATOR_GRID[record["method"]])
        assert record["val"]["cold"]["ndcg@20"] == pytest.approx(max(scores))
    report = (out / "report.md").read_text()
    assert "| csv | lightgcn | aldi | 2 |" in report and "±" in report
    # LLM-InS rows carry their simulation measurements; the report links its figures.
    assert "## Simulated interactions" in report and "| knn |" in report
    assert "## What the LM adds" in report
    full = records[-1]["method_info"]
    kept = full["online_update"]["keep"]
    assert full["full_update"]["epochs_run"] >= 1 and full["test_pairs_per_item"] == kept
    # The update chose the count of simulated users on validation, among every one tried.
    scores = full["online_update"]["val_cold_ndcg_by_keep_target_and_ridge"]
    tried = {key.split(",")[0] for key in scores}
    assert tried == {f"keep={count}" for count in full["keep_choices"]}
    assert full["keep_choices"][:3] == [5, 10, 15] and len(full["keep_choices"]) >= 4
    # llmins is compared with every other method over the same test users.
    paired = json.loads((out / "paired.json").read_text())
    assert {row["method"] for row in paired} == {"backbone", "deepmusic", "aldi", "knn"}
    assert all(row["overall ndcg@20"]["se"] > 0 for row in paired if row["method"] == "knn")
    # Over both seeds, the per-user differences pooled: a user-weighted mean of the seeds'.
    knn = {row["seed"]: row["cold recall@20"] for row in paired if row["method"] == "knn"}
    assert set(knn) == {0, 1, "pooled"}
    assert knn["pooled"]["users"] == knn[0]["users"] + knn[1]["users"]
    weighted = sum(knn[s]["mean"] * knn[s]["users"] for s in (0, 1)) / knn["pooled"]["users"]
    assert knn["pooled"]["mean"] == pytest.approx(weighted)
    assert "## llmins minus each method, paired over the same test users" in report
    assert full["simulator"]["examples"] == 32 and full["lm_measurement"]["test"]["items"] > 0
    for figure in ("recall.png", "projection-aldi.png", "projection-llmins.png"):
        assert (out / "plots" / figure).read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{figure}" in report

    users = np.load(out / "llmins" / "seed1" / "users.npy")
    items = np.load(out / "llmins" / "seed1" / "items.npy")
    assert users.dtype == np.float32 and users.shape[1] == items.shape[1]
    split = out / "split" / "seed1"
    rows = len((split / "warm_train.csv").read_text().splitlines()) - 1
    assert rows == records[-1]["data"]["warm_train"]
    assert items.shape[0] == records[-1]["data"]["items"]
    # An outside evaluator reproduces the reported numbers from the exported files alone.
    exported = ColdStartDataset(
        name="exported",
        item_kind="item",
        n_users=users.shape[0],
        item_texts=("",) * items.shape[0],
        splits={part: read_pairs_csv(split / f"{part}.csv") for part in SPLIT_NAMES},
    )
    again = evaluate(exported, users, items, stage="test")
    for task in ("overall", "cold", "warm"):
        assert again[task]["recall@20"] == pytest.approx(records[-1][task]["recall@20"])
        assert again[task]["ndcg@20"] == pytest.approx(records[-1][task]["ndcg@20"])
    assert len(list((tmp_path / "cache").glob("content-*.npy"))) == 1


@pytest.mark.parametrize(
    ("text", "seeds"), [("3", (0, 1, 2)), ("1,5,9", (1, 5, 9)), ("2,", (2,)), (" 4 , 7", (4, 7))]
)
def test_seeds_are_a_count_or_a_list(text, seeds) -> None:
    assert _seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", ",", "two", "1,x"])
def test_bad_seeds_are_refused(text) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _seeds(text)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--methods", "deepmusic,magic"], "unknown methods"),
        (["--seeds", "0"], "seeds must be at least 1"),
        (["--backbone", "svd"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_with_a_reason(arguments, message, tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.worker", "benchmark", "--out", str(tmp_path), *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_missing_data_exits_with_the_file_name(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "services.worker", "benchmark", "--dataset", "citeulike",
            "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "citeulike-a/titles.txt: file not found" in result.stderr
    assert "Traceback" not in result.stderr
