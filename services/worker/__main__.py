"""``python -m services.worker COMMAND``: see services/worker/cli.py."""

from services.worker.cli import main

main()
