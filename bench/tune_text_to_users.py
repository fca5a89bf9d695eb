"""Sweep the text-to-users encoder's settings on the *validation* split.

Trains the backbone once per data set and seed (cached under runs/; ``--backbone-epochs``
caps its epochs for quick checks, cached apart), then fits the encoder
for every combination of the given settings and prints one JSON line each: the validation
recall@k of real users among each cold item's top predicted users by the users head, the
cold validation NDCG@20 of the items head's vectors used as item vectors (early stopping
watches their sum), the training curve and seconds. Test data is never read here.

    python bench/tune_text_to_users.py --dataset ml-100k --set finetune=1,0 \
        --set align_weight=0.3,1,3 --out runs/tune-t2u-ml100k.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.evaluation import validation_ndcg
from models.llmins.text_to_users import TextToUsersConfig, fit_text_to_users
from models.runs import RunConfig, train_backbone
from models.training import tuned_configs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citeulike import add_settings_option, dataset_and_content, settings_encoder  # noqa: E402


def backbone_vectors(
    dataset, name: str, seed: int, max_epochs: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The tuned backbone's (users, items), trained once and cached under runs/.

    ``max_epochs`` caps its training (None: the tuned settings' own cap); a capped backbone
    is cached under a name of its own, so a quick check never stands in for the real one.
    """
    capped = f"-e{max_epochs}" if max_epochs is not None else ""
    cached = (
        Path("runs") / f"backbone-{dataset.name}-{name}-{dataset.fingerprint}-s{seed}{capped}.npz"
    )
    if cached.is_file():
        arrays = np.load(cached)
        return arrays["users"], arrays["items"]
    config = RunConfig(backbone=name, progress=False)
    if max_epochs is not None:
        config = replace(
            config, train_config=replace(tuned_configs(name)[1], max_epochs=max_epochs)
        )
    backbone, _ = train_backbone(dataset, config, seed)
    users, items = backbone.model.export_embeddings()
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cached, users=users, items=items)
    return users, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="citeulike")
    parser.add_argument("--data-dir", type=Path, help="default: the settings' data_dir")
    parser.add_argument("--backbone", default="mf")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone-epochs", type=int, help="cap on the backbone's epochs")
    add_settings_option(parser, TextToUsersConfig)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset, content = dataset_and_content(args.dataset, args.data_dir, seed=args.seed)
    users, items = backbone_vectors(dataset, args.backbone, args.seed, args.backbone_epochs)
    encoder_path = settings_encoder()
    keys = [key for key, _ in args.settings]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        for values in itertools.product(*(v for _, v in args.settings)):
            chosen = dict(zip(keys, values, strict=True))
            config = replace(TextToUsersConfig(seed=args.seed), **chosen)
            encoder, mapped = fit_text_to_users(
                dataset, content, users, items, config, encoder_path
            )
            line = {
                "dataset": args.dataset,
                "backbone": args.backbone,
                "seed": args.seed,
                "device": str(encoder.device),
                "config": config.to_dict(),
                "val_cold_ndcg@20_as_item_vectors": validation_ndcg(
                    dataset, users, _with_cold(items, mapped.items, dataset), "cold"
                ),
                **{k: v for k, v in encoder.info.items()},
            }
            print(json.dumps(line), flush=True)
            out.write(json.dumps(line) + "\n")


def _with_cold(items: np.ndarray, table: np.ndarray, dataset) -> np.ndarray:
    out = items.copy()
    cold = np.union1d(dataset.cold_val_items, dataset.cold_test_items)
    out[cold] = table[cold]
    return out


if __name__ == "__main__":
    main()
