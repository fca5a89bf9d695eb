#!/usr/bin/env bash
# The README's test command: installs everything into .venv, lints, then runs the whole suite.
set -euo pipefail
source "$(dirname "$0")/bootstrap.sh"
# The dashboard's browser test drives Debian's Chromium (the service itself never needs it).
if [ ! -x /usr/bin/chromium ]; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check models services tests bench
# pytest exits 5 when it collected no test: that is a failure too, as is any other non-zero.
exec .venv/bin/python -m pytest "$@"
