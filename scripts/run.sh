#!/usr/bin/env bash
# The README's main command. For now the main job is the offline benchmark on CiteULike
# (published split, titles only, MF backbone): backbone, DeepMusic and ALDI.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/python -m services.worker benchmark --dataset citeulike --backbone mf \
  --methods backbone,deepmusic,aldi --seeds 1 --out runs/citeulike-mf "$@"
