"""The prepared GPU check: its smoke mode runs the same steps on a CPU, and its pack
carries a model and data that give what the originals give."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from models.data import load_dataset
from models.devices import default_device
from models.encoders import MeanPoolEncoder, default_model_path
from tests.conftest import REPO_ROOT

SIMULATOR_FIGURES = (
    "final_loss",
    "easy_auc",
    "easy_history_auc",
    "lm_auc",
    "history_auc",
    "lm_precision",
    "history_precision",
)
TEXT_TO_USERS_FIGURES = (
    "best_val_recall@100",
    "best_val_cold_ndcg@20",
    "val_cold_ndcg@20_as_item_vectors",
)


def device_pack():
    """``bench/device_pack.py`` as a module (bench/ holds scripts, not a package)."""
    path = REPO_ROOT / "bench" / "device_pack.py"
    spec = importlib.util.spec_from_file_location("device_pack", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_smoke_run_prints_every_figure_finite(data_dir, tmp_path) -> None:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "LLMINS_DATA_DIR": str(data_dir),
        "LLMINS_DEVICE_PACK": str(tmp_path / "no-pack"),
        "OUT": str(tmp_path / "out"),
    }
    (tmp_path / "out").mkdir()
    done = subprocess.run(
        ["bash", "bench/device_check.sh", "--smoke"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    simulator = [row for row in rows if "lm_auc" in row]
    text_to_users = [row for row in rows if "best_epoch" in row]
    assert len(simulator) == 1 and len(text_to_users) == 1, done.stdout
    for row, figures in (
        (simulator[0], SIMULATOR_FIGURES),
        (text_to_users[0], TEXT_TO_USERS_FIGURES),
    ):
        assert row["dataset"] == "ml-100k" and row["device"] == str(default_device())
        assert all(math.isfinite(row[name]) for name in figures), row
    assert simulator[0]["examples"] == 32 and simulator[0]["seconds"]["prompts_scored"] > 0
    assert all(math.isfinite(loss) for _, loss in simulator[0]["curve"])
    assert text_to_users[0]["epochs_run"] == 1 and text_to_users[0]["warm_items"] > 0
    # With OUT set, the lines are kept there as printed.
    kept = [
        json.loads(line)
        for name in ("simulator.jsonl", "text_to_users.jsonl")
        for line in (tmp_path / "out" / name).read_text().splitlines()
    ]
    assert kept == rows


def test_the_packed_model_restores_to_float32_and_encodes_as_the_original(tmp_path) -> None:
    pack = device_pack()
    original = default_model_path()
    pack.copy_model(original, tmp_path / "packed", "float16")
    packed_size = (tmp_path / "packed" / pack.WEIGHTS).stat().st_size
    assert packed_size < 0.51 * (original / pack.WEIGHTS).stat().st_size
    restored = pack.copy_model(tmp_path / "packed", tmp_path / "restored", "float32")
    texts = ["Toy Story (1995). Genres: Animation", "Probabilistic matrix factorization"]
    before = MeanPoolEncoder(original).encode(texts)
    after = MeanPoolEncoder(restored).encode(texts)
    cosine = (
        (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    )
    assert cosine.min() > 0.9999


def test_the_packed_data_loads_as_the_original(data_dir, tmp_path) -> None:
    pack = device_pack()
    pack.pack_data(data_dir, tmp_path / "data")
    for name in ("citeulike", "ml-100k"):
        packed = load_dataset(name, tmp_path / "data")
        assert packed.fingerprint == load_dataset(name, data_dir).fingerprint
