# Sourced by scripts/run.sh and scripts/test.sh: make .venv and install the project into it.
# pip skips what is already installed, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# torch is pinned to 2.13.0 in pyproject.toml; its CPU wheel is found on this machine's disk.
.venv/bin/python -m pip install --quiet -e ".[${LLMINS_EXTRAS:-test}]"
