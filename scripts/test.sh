#!/usr/bin/env bash
# The README's test command: installs everything into .venv, lints, then runs the whole suite.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
.venv/bin/ruff check models services tests bench
# pytest exits 5 when it collected no test: that is a failure too, as is any other non-zero.
exec .venv/bin/python -m pytest "$@"
