"""``python -m services.simulator --adapter FOLDER``: serve the simulator on vLLM's protocol."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import uvicorn

from models.llmins.simulator import LMSimulator, SimulatorConfig
from services.settings import get_settings
from services.simulator.app import create_app

logger = logging.getLogger("services.simulator")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.simulator", description=__doc__)
    parser.add_argument("--adapter", help="a saved LoRA adapter folder (peft format)")
    parser.add_argument(
        "--base",
        help="local Hugging Face model folder or GGUF file (default: the adapter's own "
        "base, as saved with it; else MiniLM)",
    )
    parser.add_argument("--model-name", default="simulator", help="the `model` clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # Refused here, in one line, rather than as a peft traceback after the model loads.
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        parser.error(f"--adapter {args.adapter}: no adapter_config.json there")
    if args.base and not Path(args.base).exists():
        parser.error(f"--base {args.base}: no such model folder or GGUF file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    level = get_settings().log_level
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.adapter is None:
        logger.warning("no --adapter: serving a fresh, untrained adapter (its answers are noise)")
    # The settings the adapter was trained with (its max_length, its base), where saved.
    config = (
        SimulatorConfig.saved_with(args.adapter) if args.adapter else None
    ) or SimulatorConfig()
    if args.base:
        config = replace(config, model_path=args.base)
    try:
        simulator = LMSimulator(config, adapter_path=args.adapter)
    except ValueError as error:  # e.g. a tokenizer that cannot tell Yes from No
        raise SystemExit(f"python -m services.simulator: {error}") from None
    base_name = config.model_path or "all-MiniLM-L6-v2"
    logger.info(
        "serving %s (%s model %s, adapter %s) on http://%s:%d/v1",
        args.model_name,
        simulator.kind,
        base_name,
        args.adapter,
        args.host,
        args.port,
    )
    app = create_app(simulator, args.model_name, base_name)
    uvicorn.run(app, host=args.host, port=args.port, log_level=level.lower())


if __name__ == "__main__":
    main()
