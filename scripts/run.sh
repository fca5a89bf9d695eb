#!/usr/bin/env bash
# The README's main command: the service in embedded mode on http://127.0.0.1:8000.
# The first run bootstraps CiteULike's warm part (trains a model version, fills the stores in
# ./state; minutes on 2 cores); later runs start in seconds. Arguments go to the server
# (e.g. --port 8080). The offline benchmark is `python -m services.worker benchmark ...`.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
exec .venv/bin/python -m services.api "$@"
