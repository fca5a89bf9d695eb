"""Sweep a backbone's learning rate and L2 weight on the warm *validation* split.

Prints one JSON line per setting and saves them all; the chosen settings go into
``models.training.TUNED``. Test metrics are not computed here: choices are made on
validation only.

    python bench/tune_backbone.py --backbone mf --lr 3e-3,5e-3 --reg 1e-3,5e-3 --out runs/t.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import torch

from models.backbones import build_backbone
from models.data import load_dataset
from models.training import train_bpr, tuned_configs, warm_validator


def floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="citeulike")
    parser.add_argument("--data-dir", type=Path, help="default: the settings' data_dir")
    parser.add_argument("--backbone", default="mf")
    parser.add_argument("--lr", type=floats, required=True)
    parser.add_argument("--reg", type=floats, required=True)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--init-std", type=float)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.data_dir is None:
        from services.settings import get_settings

        args.data_dir = get_settings().data_dir

    dataset = load_dataset(args.dataset, args.data_dir)
    train = dataset.splits["warm_train"]
    tuned_backbone, tuned_train = tuned_configs(args.backbone)
    rows = []
    for lr, reg in itertools.product(args.lr, args.reg):
        backbone_config = replace(tuned_backbone, reg=reg)
        if args.init_std is not None:
            backbone_config = replace(backbone_config, init_std=args.init_std)
        train_config = replace(tuned_train, lr=lr, max_epochs=args.max_epochs)
        if args.batch_size:
            train_config = replace(train_config, batch_size=args.batch_size)
        torch.manual_seed(0)
        model = build_backbone(
            args.backbone, dataset.n_users, dataset.n_items, train, backbone_config
        ).to(args.device)

        result = train_bpr(model, train, warm_validator(dataset), train_config, progress=False)
        row = {
            "backbone": args.backbone,
            "model": backbone_config.to_dict(),
            "train": train_config.to_dict(),
            "best_epoch": result.best_epoch,
            "best_val_warm_ndcg@20": round(result.best_score, 4),
            "seconds": round(result.seconds, 1),
            "device": args.device,
            "curve": [(h["epoch"], round(h["val"], 4)) for h in result.history if "val" in h],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
