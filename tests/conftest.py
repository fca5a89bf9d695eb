"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The test models are tiny: one thread is faster than two fighting over small kernels, and
# leaves the second core to the worker processes some tests start.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The read-only research data (``citeulike-a/``...): ``$LLMINS_DATA_DIR``, else
    ``../shared/data`` next to the repository; a relative value is taken from the repo root.

    Missing data fails rather than skips: a skipped data test reads as a pass in CI.
    """
    path = REPO_ROOT / os.environ.get("LLMINS_DATA_DIR", "../shared/data")
    if not path.is_dir():
        pytest.fail(f"data folder {path} not found; set LLMINS_DATA_DIR to the shared data")
    return path
