#!/usr/bin/env bash
# The README's main command. Until the online service lands, the main job is the offline
# benchmark on CiteULike (published split, titles only, MF backbone): the backbone, the two
# embedding-simulation baselines, the zero-shot kNN baseline and LLM-InS.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/python -m services.worker benchmark --dataset citeulike --backbone mf \
  --methods backbone,deepmusic,aldi,knn,llmins --seeds 1 --out runs/citeulike-mf "$@"
