"""Sweep a content-to-embedding method's settings on the *validation* split.

Trains the backbone once (its tuned settings, cached under runs/), then fits the method for
every combination of the given settings (the rest: the method's tuned ones) and prints one
JSON line each: validation cold and overall NDCG@20 and what the method chose. Test data is
never read here.

    python bench/tune_generator.py --method aldi --set lr=1e-3,3e-4 --set alpha=0.9,0.5 \
        --out runs/tune-aldi.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from models.baselines import TUNED
from models.baselines.aldi import AldiConfig
from models.baselines.generator import GeneratorConfig
from models.benchmark import BenchmarkConfig, fit_baseline
from models.evaluation import evaluate
from models.runs import train_backbone

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citeulike import add_settings_option, dataset_and_content  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="citeulike")
    parser.add_argument("--data-dir", type=Path, help="default: the settings' data_dir")
    parser.add_argument("--backbone", default="mf")
    parser.add_argument("--method", choices=("deepmusic", "aldi"), required=True)
    add_settings_option(parser, GeneratorConfig, AldiConfig)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset, content = dataset_and_content(args.dataset, args.data_dir)
    base = BenchmarkConfig(backbone=args.backbone, methods=(args.method,), progress=False)
    cached = Path("runs") / f"backbone-{args.dataset}-{args.backbone}-{dataset.fingerprint}.npz"
    if cached.is_file():
        arrays = np.load(cached)
        users, items = arrays["users"], arrays["items"]
    else:
        backbone, _ = train_backbone(dataset, base, seed=0)
        users, items = backbone.model.export_embeddings()
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached, users=users, items=items)

    generator_keys = {f.name for f in fields(GeneratorConfig)}
    keys = [key for key, _ in args.settings]
    rows = []
    for values in itertools.product(*(values for _, values in args.settings)):
        chosen = dict(zip(keys, values, strict=True))
        generator = {k: v for k, v in chosen.items() if k in generator_keys}
        aldi = {k: v for k, v in chosen.items() if k not in generator_keys}
        config = replace(base, aldi_config=replace(base.aldi_config, **aldi))
        trained_with = replace(TUNED[args.method], **generator)
        torch.manual_seed(0)
        result = fit_baseline(
            args.method, dataset, content, users, items, (trained_with,), config, seed=0
        )
        val = evaluate(dataset, result.users, result.items, stage="val")
        row = {
            "method": args.method,
            "settings": chosen,
            "val_cold_ndcg@20": round(val["cold"]["ndcg@20"], 4),
            "val_overall_ndcg@20": round(val["overall"]["ndcg@20"], 4),
            "info": {k: v for k, v in result.info.items() if k not in ("aldi", "grid")},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
