"""Worker commands: ``python -m services.worker benchmark|import|bootstrap|train|refresh``.

Thin on purpose: it parses arguments, reads settings, and calls models/ functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from models.backbones import BACKBONES, BackboneConfig
from models.data import DATASETS, DataFormatError, load_dataset
from models.llmins.simulator import SimulatorConfig
from models.training import TrainConfig, tuned_configs
from services.imports import BadRow
from services.settings import get_settings


def _names(text: str, known: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown or text!r}; choose from {', '.join(known)}"
        )
    return names


def _seeds(text: str) -> tuple[int, ...]:
    """``3`` means seeds 0,1,2; ``1,5,9`` lists them; ``2,`` is seed 2 alone."""
    try:
        if "," in text:
            seeds = tuple(int(seed) for seed in text.split(",") if seed.strip())
            if not seeds:
                raise ValueError(text)
            return seeds
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be a count or a list: {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("seeds must be at least 1")
    return tuple(range(count))


def build_parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m services.worker")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "benchmark", help="offline benchmark: overall/cold/warm Recall@20 and NDCG@20"
    )
    bench.add_argument("--dataset", choices=DATASETS, default="citeulike")
    bench.add_argument("--data-dir", type=Path, default=settings.data_dir)
    bench.add_argument("--interactions", type=Path, help="csv data set: user,item file")
    bench.add_argument("--items", type=Path, help="csv data set: item,text file")
    bench.add_argument("--backbone", choices=BACKBONES, default="mf")
    bench.add_argument(
        "--methods",
        help="comma-separated method names (default: all but llmins-paper; an unknown name "
        "lists them)",
    )
    bench.add_argument("--seeds", type=_seeds, default=(0,), help="a count (3) or a list (0,4)")
    bench.add_argument("--out", type=Path, required=True, help="folder for results and report")
    bench.add_argument("--export-embeddings", action="store_true")
    bench.add_argument("--dim", type=int, help=f"embedding size (default {BackboneConfig.dim})")
    bench.add_argument(
        "--max-epochs", type=int, help=f"backbone epochs cap (default {TrainConfig.max_epochs})"
    )
    bench.add_argument(
        "--simulator-model", type=Path, help="local HF folder of the LM simulator (default MiniLM)"
    )
    bench.add_argument("--simulator-lr", type=float, help="simulator LoRA learning rate")
    bench.add_argument("--simulator-examples", type=int, help="simulator training prompts")
    bench.add_argument("--use-tags", action="store_true", help="CiteULike: append tags (leaks)")
    bench.add_argument("--no-progress", action="store_true", help="hide progress bars")
    service_commands = {
        "bootstrap": (
            "train a model version on the configured data set and load the stores "
            "(does nothing when a version is active)",
            None,
        ),
        "train": (
            "train a new version on the configured data set (LLMINS_DATASET=none: on the "
            "store's own items and interactions), re-warm posted items, switch (embedded "
            "mode: stop the server first, it owns the local index; or POST /v1/admin/train)",
            None,
        ),
        "refresh": ("retrain the backbone on real and simulated interactions, swap indexes", 100),
    }
    imports = commands.add_parser(
        "import",
        help="import items and/or interactions from CSV or JSON Lines files (all or nothing); "
        "formats in services/imports.py",
    )
    imports.add_argument("--items", type=Path, help="id,text[,categories][,timestamp] rows")
    imports.add_argument("--interactions", type=Path, help="user_id,item_id[,timestamp] rows")
    imports.add_argument("--no-progress", action="store_true", help="hide progress bars")
    for name, (text, epochs) in service_commands.items():
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--max-epochs", type=int, default=epochs, help="cap every training loop"
        )
        command.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def service_command(args: argparse.Namespace) -> None:
    """``bootstrap``, ``train`` and ``refresh``: the service's own functions, from a shell."""
    from services.bootstrap import bootstrap, train
    from services.refresh import refresh
    from services.runtime import Runtime

    runtime = Runtime(get_settings())
    try:
        if args.command == "bootstrap":
            version = bootstrap(runtime, args.max_epochs, progress=not args.no_progress)
            print(f"active model version: {version or 'none (LLMINS_DATASET=none)'}")
        elif args.command == "train":
            version = train(runtime, args.max_epochs, progress=not args.no_progress)
            print(f"active model version: {version}")
        else:
            record = refresh(runtime, args.max_epochs, progress=not args.no_progress)
            print(json.dumps(record, indent=2))
    finally:
        runtime.close()


def import_command(args: argparse.Namespace) -> None:
    """``import``: the files into the store, then the new items' warm-ups on their way.

    It opens the store alone (not the vector index, which an embedded server holds), so it
    can run beside one; the embedded server warms what this imported at its next start,
    and a distributed import sends the warm-ups to the workers at once (before the first
    model version, the items wait for it).
    """
    from services.imports import import_files
    from services.store import Store

    if args.items is None and args.interactions is None:
        raise SystemExit("error: give --items, --interactions or both")
    settings = get_settings()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.resolved_database_url)
    try:
        store.migrate()
        report = import_files(store, args.items, args.interactions, not args.no_progress)
        modelled = store.active_version() is not None
    finally:
        store.dispose()
    if report.queued and not modelled:
        print(
            f"{len(report.queued)} new items are queued: no model version is active yet, so "
            "they wait for the first one (`train`, or POST /v1/admin/train)",
            file=sys.stderr,
        )
    elif report.queued and settings.mode == "distributed":
        from services.queues import CeleryQueue

        queue = CeleryQueue()
        for item_id, job_id in report.queued:
            queue.enqueue(item_id, job_id)
    elif report.queued:
        print(
            f"{len(report.queued)} new items are queued: the embedded server warms them when "
            "it starts (restart a running one, or POST items to it instead)",
            file=sys.stderr,
        )
    print(json.dumps(report.summary(), indent=2))


def benchmark(args: argparse.Namespace) -> None:
    """The offline benchmark. Its module (and the plotting library) is imported here, so the
    service's processes, which share this command line, never load it."""
    from models.benchmark import DEFAULT_METHODS, METHODS, BenchmarkConfig, run_benchmark

    methods = _names(args.methods, METHODS, "methods") if args.methods else DEFAULT_METHODS
    settings = get_settings()
    options: dict = {}
    if args.dataset == "csv":
        if not (args.interactions and args.items):
            raise SystemExit("--dataset csv needs --interactions and --items")
        options = {"interactions_path": args.interactions, "items_path": args.items}
    elif args.use_tags:
        options = {"use_tags": True}
    tuned_backbone, tuned_train = tuned_configs(args.backbone)
    config = BenchmarkConfig(
        backbone=args.backbone,
        methods=methods,
        seeds=args.seeds,
        backbone_config=replace(tuned_backbone, **({"dim": args.dim} if args.dim else {})),
        train_config=replace(
            tuned_train, **({"max_epochs": args.max_epochs} if args.max_epochs else {})
        ),
        encoder_path=str(settings.encoder_path) if settings.encoder_path else None,
        cache_dir=str(settings.cache_dir),
        export_embeddings=args.export_embeddings,
        progress=not args.no_progress,
        simulator=SimulatorConfig(
            model_path=str(args.simulator_model) if args.simulator_model else None,
            **({"lr": args.simulator_lr} if args.simulator_lr else {}),
        ),
        simulator_examples=args.simulator_examples,
    )
    records = run_benchmark(
        lambda seed: load_dataset(args.dataset, args.data_dir, seed=seed, **options),
        config,
        args.out,
    )
    print((args.out / "report.md").read_text())
    print(f"{len(records)} records written to {args.out / 'results.json'}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=get_settings().log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "benchmark":
            benchmark(args)
        elif args.command == "import":
            import_command(args)
        else:
            service_command(args)
    except argparse.ArgumentTypeError as error:  # --methods, checked once the names are known
        parser.error(f"argument --methods: {error}")
    except (DataFormatError, BadRow) as error:
        # Bad data is the user's to fix: say which file and line, without a traceback.
        parser.exit(2, f"error: {error}\n")
