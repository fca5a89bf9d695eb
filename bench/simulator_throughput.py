"""Prompts per second of the in-process simulator on this CPU, step by step.

Scores the same real CiteULike prompts (5 most similar history titles + target, the
benchmark's form) under each setting and prints/saves JSON, so what each step buys is
measured rather than assumed:

    python bench/simulator_throughput.py --prompts 512 --out docs/sweeps/simulator-throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.llmins.history import UserHistories
from models.llmins.prompts import PromptBuilder
from models.llmins.simulator import LMSimulator, SimulatorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citeulike import dataset_and_content  # noqa: E402


def rate(simulator: LMSimulator, prompts: list[str], merged: bool, sort: bool) -> float:
    """Prompts/s of one pass; ``merged`` folds LoRA in, ``sort`` batches by length."""
    model = simulator.model
    if not sort:
        order = np.arange(len(prompts))
    else:
        order = np.argsort([len(p) for p in prompts], kind="stable")
    size = simulator.config.score_batch_size
    if merged:
        model.merge_adapter()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(prompts), size):
            batch = simulator._batch([prompts[i] for i in order[start : start + size]])
            simulator._yes_no_logits(batch)
    seconds = time.perf_counter() - started
    if merged:
        model.unmerge_adapter()
    return len(prompts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data, content = dataset_and_content(threads=args.threads)
    histories = UserHistories.from_pairs(data.splits["warm_train"], data.n_users)
    builder = PromptBuilder(data.item_kind, data.item_texts, histories, content)
    rng = np.random.default_rng(0)
    users = rng.integers(data.n_users, size=args.prompts)
    items = rng.choice(data.cold_test_items, size=args.prompts)
    prompts = builder.prompts(users, items)
    results = []
    for max_length, batch, merged, sort in [
        (128, 64, False, False),
        (128, 64, False, True),
        (128, 64, True, True),
        (128, 16, True, True),
        (96, 64, True, True),
    ]:
        simulator = LMSimulator(SimulatorConfig(max_length=max_length, score_batch_size=batch))
        rate(simulator, prompts[:64], merged, sort)  # warm-up
        measured = rate(simulator, prompts, merged, sort)
        row = {
            "max_length": max_length,
            "batch": batch,
            "lora_merged": merged,
            "length_sorted": sort,
            "prompts_per_s": round(measured, 1),
        }
        print(json.dumps(row), flush=True)
        results.append(row)
    tokens = [len(builder_ids) for builder_ids in simulator.tokenizer(prompts).input_ids]
    summary = {"prompts": args.prompts, "threads": args.threads,
               "mean_tokens": float(np.mean(tokens)), "results": results}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
