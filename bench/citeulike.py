"""The benchmark scripts' common start: a data set (CiteULike unless told) and its content.

Imported by the scripts in bench/ (which put this folder on ``sys.path``), not a package
module. The settings are read inside the function, after a script has parsed its
arguments, as the scripts did before sharing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from models.data import ColdStartDataset


def dataset_and_content(
    name: str = "citeulike",
    data_dir: Path | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> tuple[ColdStartDataset, np.ndarray]:
    """Data set ``name`` and its MiniLM content vectors, as the benchmark and service have them.

    Reads from the settings' ``data_dir`` (or ``data_dir``) and encodes item texts with the
    settings' encoder through the shared cache, so every script measures on the same vectors
    and only the first run pays for encoding. ``threads``, when given, sets torch's thread
    count first: the encoder and whatever the script runs next use it. ``seed`` picks the
    split of data sets the project splits itself (MovieLens).
    """
    from models.data import load_dataset
    from models.encoders import MeanPoolEncoder, encode_cached
    from services.settings import get_settings

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    settings = get_settings()
    dataset = load_dataset(name, data_dir or settings.data_dir, seed)
    encoder = MeanPoolEncoder(settings.encoder_path)
    return dataset, encode_cached(encoder, dataset.item_texts, settings.cache_dir)


def settings_encoder() -> str | None:
    """The settings' LM folder (``LLMINS_ENCODER_PATH``; None: the packaged MiniLM).

    The one that made the content vectors, and the one the scripts tune, so a GPU host
    that carries its own copy of MiniLM (``bench/device_check.sh``) needs no installed one.
    """
    from services.settings import get_settings

    path = get_settings().encoder_path
    return str(path) if path else None


def add_settings_option(parser, *config_classes: type) -> None:
    """``--set KEY=V1,V2`` (repeatable, into ``args.settings``): a field of one of
    ``config_classes``; every combination of the values runs."""
    names = " or ".join(c.__name__ for c in config_classes)
    parser.add_argument(
        "--set",
        type=setting_parser(*config_classes),
        action="append",
        default=[],
        dest="settings",
        help=f"KEY=V1,V2: a {names} field; every combination runs",
    )


def setting_parser(*config_classes: type):
    """An argparse type for ``--set KEY=V1,V2``: KEY a field of one of ``config_classes``
    (dataclasses), the values cast to that field's type (bool as 0/1, ``none`` for an
    optional int's None). Returns ``(key, values)``."""
    import argparse
    from dataclasses import fields

    types = {f.name: f.type for c in config_classes for f in fields(c)}
    casts = {
        "bool": lambda v: bool(int(v)),
        "int": int,
        "int | None": lambda v: None if v.lower() == "none" else int(v),
        "str": str,
        "str | None": str,
    }

    def parse(text: str) -> tuple[str, list]:
        key, _, values = text.partition("=")
        if key not in types:
            raise argparse.ArgumentTypeError(f"unknown setting {key!r}; known: {', '.join(types)}")
        cast = casts.get(str(types[key]), float)
        return key, [cast(value) for value in values.split(",")]

    return parse
