"""Pack what ``bench/device_check.sh`` needs on a GPU host with no network, and unpack it there.

The GPU host has torch, transformers and peft, but no network, no model weights and no
pydantic; what travels with the working tree is capped at 64 MiB. ``pack`` (run here, with
the project installed) fills one git-ignored folder, ``.devpack/`` by default:

* ``minilm-fp16/``: the packaged all-MiniLM-L6-v2's config and tokenizer, its weights in
  float16 (45 MB; in float32 they alone are 91 MB, over the cap);
* ``data/citeulike-a/``, ``data/ml-100k/``: the files the loaders read, nothing else;
* ``wheels/``: the packages the bench scripts import that the host lacks (pydantic-settings
  and its needs), at this environment's versions, built for the host's CPython 3.12 on
  manylinux x86-64 (``pip download`` from the configured registry).

It prints every part's size and refuses a pack over 60 MiB (the tree itself is ~1 MiB).
``restore`` (run there) writes the weights back as float32 into a model folder: the tuned
models then train in float32 as on a CPU, from weights rounded once to float16.

    python bench/device_pack.py pack [--out .devpack] [--data-dir DIR]
    python bench/device_pack.py restore .devpack/minilm-fp16 /tmp/minilm
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from models.data.dataset import SPLIT_NAMES

#: The model folder's files transformers reads (the sentence-transformers extras are left).
MODEL_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
WEIGHTS = "model.safetensors"
#: Per data set folder, the files its loader reads (tags, citations and users' metadata not).
DATA_FILES = {
    "citeulike-a": (
        "titles.txt",
        "users.dat",
        *(f"split/{part}.csv" for part in SPLIT_NAMES),
    ),
    "ml-100k": ("u.data", "u.item"),
}
#: What the bench scripts import that the GPU host's image lacks (its package list is in
#: the device notes): the settings object's pydantic-settings, with every package it needs
#: (typing-extensions too: pydantic needs a newer one than some images hold).
WHEELS = (
    "pydantic",
    "pydantic-core",
    "pydantic-settings",
    "python-dotenv",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
)
#: The GPU host's Python and the manylinux tags its pip accepts.
HOST_PYTHON = "3.12"
HOST_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
LIMIT_MIB = 60


def copy_model(model: Path, folder: Path, dtype: str) -> Path:
    """``model``'s config and tokenizer files, and its floating weights cast to ``dtype``.

    ``float16`` packs (half the bytes); ``float32`` restores a folder transformers loads as
    the original. A restored folder has the original's config and file sizes, so its
    content-vector cache key is the original's too: point ``LLMINS_CACHE_DIR`` elsewhere
    where the original's vectors must not be read.
    """
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy2(model / name, folder / name)
    cast = getattr(torch, dtype)
    tensors = load_file(model / WEIGHTS)
    tensors = {k: v.to(cast) if v.is_floating_point() else v for k, v in tensors.items()}
    save_file(tensors, folder / WEIGHTS, metadata={"format": "pt"})
    return folder


def pack_data(data_dir: Path, folder: Path) -> None:
    """The :data:`DATA_FILES` of ``data_dir`` under ``folder``, laid out as the loaders read
    them (``folder`` can stand for ``LLMINS_DATA_DIR``)."""
    for name, files in DATA_FILES.items():
        for file in files:
            target = folder / name / file
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(data_dir / name / file, target)


def download_wheels(folder: Path) -> None:
    """This environment's versions of :data:`WHEELS`, as wheels for the GPU host."""
    specs = [f"{name}=={metadata.version(name)}" for name in WHEELS]
    platforms = [flag for tag in HOST_PLATFORMS for flag in ("--platform", tag)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        HOST_PYTHON,
        "--implementation",
        "cp",
        *platforms,
        "--dest",
        str(folder),
        *specs,
    ]
    subprocess.run(command, check=True)


def size_mib(path: Path) -> float:
    """Bytes of every file under ``path``, in MiB (the unit of the call's cap)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def pack(out: Path, data_dir: Path, model: Path) -> None:
    """Build the pack beside ``out`` and move it there only when it is under the limit."""
    building = out.with_name(out.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    copy_model(model, building / "minilm-fp16", "float16")
    pack_data(data_dir, building / "data")
    download_wheels(building / "wheels")
    for part in sorted(building.iterdir()):
        print(f"{part.name}: {size_mib(part):.1f} MiB")
    total = size_mib(building)
    print(f"total: {total:.1f} MiB (limit {LIMIT_MIB} MiB; the call's cap is 64 MiB)")
    if total > LIMIT_MIB:
        shutil.rmtree(building)
        sys.exit(f"refused: the pack is {total:.1f} MiB, over {LIMIT_MIB} MiB")
    shutil.rmtree(out, ignore_errors=True)
    building.rename(out)
    print(f"packed into {out}/: name it in the device call's carry")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="fill the pack folder (here)")
    packing.add_argument("--out", type=Path, default=Path(".devpack"))
    packing.add_argument("--data-dir", type=Path, help="default: the settings' data_dir")
    restoring = commands.add_parser("restore", help="a float32 model folder (there)")
    restoring.add_argument("packed", type=Path)
    restoring.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "restore":
        print(copy_model(args.packed, args.folder, "float32"))
        return
    from models.encoders import default_model_path
    from services.settings import get_settings

    pack(args.out, args.data_dir or get_settings().data_dir, default_model_path())


if __name__ == "__main__":
    main()
