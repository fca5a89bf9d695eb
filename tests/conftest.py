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


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A randomly initialised two-layer Llama with MiniLM's tokenizer: a causal LM, no download."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from models.encoders import default_model_path

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2():
    """The packaged SmolLM2-135M-Instruct (GGUF, installed by scripts/bootstrap.sh), untuned."""
    from models.llmins.simulator import LMSimulator, SimulatorConfig, packaged_smollm2

    return LMSimulator(SimulatorConfig(model_path=str(packaged_smollm2())))
