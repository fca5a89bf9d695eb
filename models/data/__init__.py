"""Data sets by name: one entry point for the CLI, the benchmark and the services.

Every loader returns a :class:`ColdStartDataset`; callers pick a data set by the name a config
or command line gives, without importing its module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.data.citeulike import load_citeulike
from models.data.csvdata import load_csv_dataset
from models.data.dataset import SPLIT_NAMES, ColdStartDataset
from models.data.errors import DataFormatError
from models.data.movielens import load_ml1m, load_ml100k

__all__ = [
    "DATASETS",
    "SPLIT_NAMES",
    "ColdStartDataset",
    "DataFormatError",
    "load_dataset",
]

#: Names :func:`load_dataset` knows.
DATASETS: tuple[str, ...] = ("citeulike", "ml-100k", "ml-1m", "csv")


def load_dataset(
    name: str, data_dir: Path | str, seed: int = 0, **options: Any
) -> ColdStartDataset:
    """Load data set ``name`` from ``data_dir``.

    * ``citeulike``: the published split, so ``seed`` has no effect; option ``use_tags``.
    * ``ml-100k``, ``ml-1m``: the folder of that name under ``data_dir``, split from ``seed``.
    * ``csv``: options ``interactions_path`` and ``items_path`` (required; relative paths are
      taken from ``data_dir``) and any other keyword of :func:`load_csv_dataset`.

    Raises:
        ValueError: for an unknown ``name`` (the message lists :data:`DATASETS`).
        TypeError: for an option the data set does not take.
    """
    data_dir = Path(data_dir)
    if name == "citeulike":
        return load_citeulike(data_dir, **options)
    if name == "ml-100k":
        return load_ml100k(data_dir, seed, **options)
    if name == "ml-1m":
        return load_ml1m(data_dir, seed, **options)
    if name == "csv":
        paths = {key: options.pop(key, None) for key in ("interactions_path", "items_path")}
        missing = [key for key, path in paths.items() if path is None]
        if missing:
            raise TypeError(f"data set 'csv' needs option(s) {', '.join(missing)}")
        return load_csv_dataset(
            data_dir / paths["interactions_path"],
            data_dir / paths["items_path"],
            seed,
            **options,
        )
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
