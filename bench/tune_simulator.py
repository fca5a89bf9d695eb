"""Does the Yes/No simulator learn? Its training curve, the easy task and the task that matters.

Tunes the LM simulator exactly as the benchmark does (prompts from warm training
interactions; ``--set negatives=random`` for the paper's random negatives, ``lists`` for
the filter's lists of warm items playing cold ones), then measures on cold *validation*
items, which no training prompt mentions:

* ``easy_auc``: P(Yes) of a real (user, cold item) pair against the same user with a random
  cold item they never interacted with (one AUC over all pairs);
* ``lm_auc`` / ``history_auc``: per-item AUC among each item's ``--candidates`` most
  history-similar users (the filter's candidates), of the LM's P(Yes) and of the history
  similarity itself, with ``lm_precision`` / ``history_precision`` at ``--keep``.

One JSON line per setting (appended to ``--out``):

    python bench/tune_simulator.py --model minilm --dataset citeulike \\
        --set lr=5e-4,2e-3 --set epochs=1,3 --out runs/tune-simulator.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.llmins.filtering import top_users
from models.llmins.refine import per_item_auc, per_item_precision
from models.llmins.simulator import SimulatorConfig, packaged_smollm2
from models.llmins.variants import SimulatorTraining
from models.llmins.workbench import Workbench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citeulike import add_settings_option, dataset_and_content, settings_encoder  # noqa: E402

#: ``minilm`` is the settings' encoder: the packaged MiniLM unless ``LLMINS_ENCODER_PATH``
#: names another folder (a GPU host's carried copy).
MODELS = {"minilm": settings_encoder, "smollm2": lambda: str(packaged_smollm2())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
    parser.add_argument("--dataset", default="citeulike")
    parser.add_argument("--data-dir", type=Path, help="default: the settings' data_dir")
    add_settings_option(parser, SimulatorConfig, SimulatorTraining)
    parser.add_argument("--items", type=int, default=100, help="cold validation items scored")
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--keep", type=int, default=10, help="precision at this many users")
    parser.add_argument("--easy-pairs", type=int, default=500, help="positives of the easy task")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data, content = dataset_and_content(args.dataset, args.data_dir, args.threads)
    model_path = MODELS[args.model]()
    simulator_keys = set(SimulatorConfig.__dataclass_fields__)
    keys = [key for key, _ in args.settings]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for values in itertools.product(*(values for _, values in args.settings)):
        chosen = dict(zip(keys, values, strict=True))
        simulator = replace(
            SimulatorConfig(model_path=model_path),
            **{k: v for k, v in chosen.items() if k in simulator_keys},
        )
        training = replace(
            SimulatorTraining(), **{k: v for k, v in chosen.items() if k not in simulator_keys}
        )
        row = measure(data, content, simulator, training, args)
        row = {"model": args.model, "dataset": args.dataset, "settings": chosen, **row}
        print(json.dumps(row), flush=True)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")


def measure(data, content, simulator: SimulatorConfig, training: SimulatorTraining, args) -> dict:
    # The simulator needs no backbone: placeholders stand in for its vectors.
    bench = Workbench(
        data,
        content,
        np.zeros((data.n_users, 1), np.float32),
        np.zeros((data.n_items, 1), np.float32),
        simulator=simulator,
        progress=False,
    )
    rng = np.random.default_rng(0)
    items = data.cold_val_items
    rows = np.sort(rng.choice(len(items), min(args.items, len(items)), replace=False))
    history = bench.history.scores(items[rows])
    candidates = top_users(history, args.candidates)
    truth = bench.truth("val")
    labels = np.array([[u in truth[r] for u in candidates[i]] for i, r in enumerate(rows)])
    started = time.perf_counter()
    lm = bench.lm_logits(training, "val", rows, candidates)
    tuned = bench.simulator(training)
    scoring = time.perf_counter() - started - tuned.training_info["seconds"]
    similarity = np.take_along_axis(history, candidates, axis=1)
    return {
        "device": str(tuned.device),
        "final_loss": tuned.training_info["final_loss"],
        "curve": tuned.training_info["curve"],
        "examples": tuned.training_info["examples"],
        **easy_task(bench, tuned, training, args.easy_pairs, rng),
        "lm_auc": float(np.nanmean(per_item_auc(lm, labels))),
        "history_auc": float(np.nanmean(per_item_auc(similarity, labels))),
        "lm_precision": float(per_item_precision(lm, labels, args.keep).mean()),
        "history_precision": float(per_item_precision(similarity, labels, args.keep).mean()),
        "seconds": {
            "training": round(tuned.training_info["seconds"], 1),
            "scoring": round(scoring, 1),
            "prompts_scored": int(labels.size),
        },
    }


def easy_task(bench: Workbench, simulator, training, pairs: int, rng) -> dict[str, float]:
    """AUC of P(Yes) (``easy_auc``) and of history similarity (``easy_history_auc``): real
    (user, cold validation item) pairs against the same users with a random cold
    validation item they did not interact with."""
    real = bench.dataset.splits["cold_val"]
    real = real[rng.choice(len(real), min(pairs, len(real)), replace=False)]
    seen = set(map(tuple, bench.dataset.splits["cold_val"].tolist()))
    items = bench.dataset.cold_val_items
    fake = []
    for user, _ in real:
        item = int(rng.choice(items))
        while (int(user), item) in seen:
            item = int(rng.choice(items))
        fake.append((int(user), item))
    pairs_all = np.concatenate([real, np.array(fake)])
    builder = bench.prompt_builder(training.history)
    logits = simulator.logits(builder.prompts(pairs_all[:, 0], pairs_all[:, 1]))
    labels = np.r_[np.ones(len(real)), np.zeros(len(fake))]
    # Similarities of the items the pairs name only, not of every cold item.
    scored, rows = np.unique(pairs_all[:, 1], return_inverse=True)
    similarity = bench.history.scores(scored)[rows, pairs_all[:, 0]]
    return {
        "easy_auc": float(per_item_auc(logits[None, :], labels[None, :])[0]),
        "easy_history_auc": float(per_item_auc(similarity[None, :], labels[None, :])[0]),
    }


if __name__ == "__main__":
    main()
