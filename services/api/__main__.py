"""``python -m services.api``: serve the API.

Embedded mode (the default): bootstraps the configured data set on first run (trains a
model version and loads the stores; minutes), then serves, warming posted items in a
background thread of this process. Distributed mode: serves only; warm-ups go to Celery.
"""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn
from threadpoolctl import threadpool_limits

from services.api.app import create_app
from services.bootstrap import bootstrap
from services.jobs import recover_after_restart, requeue_pending
from services.queues import CeleryQueue, InProcessQueue
from services.runtime import Runtime
from services.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m services.api")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument(
        "--max-epochs", type=int, help="cap training epochs of the first bootstrap (quick trials)"
    )
    args = parser.parse_args(argv)
    if settings.mode == "distributed":
        try:
            settings.refuse_shared_local_index("distributed mode (API and Celery workers)")
        except ValueError as error:
            parser.error(str(error))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    runtime = Runtime(settings)
    if settings.mode == "embedded":
        recover_after_restart(runtime)
        if bootstrap(runtime, max_epochs=args.max_epochs) is not None:
            try:
                # A version that asks the LM gets its refining service now (a child
                # process, unless LLMINS_SIMULATOR_URL names one), not at the first item.
                runtime.simulator_for(runtime.release())
            except RuntimeError as error:  # warm-ups retry; items are served by content
                logging.getLogger(__name__).error("%s", error)
        queue = InProcessQueue(runtime)
        if settings.refresh_interval_s > 0:
            queue.refresh_every(settings.refresh_interval_s)
    else:
        queue = CeleryQueue()
    requeue_pending(runtime, queue)
    runtime.prepare_to_serve()
    # Ranking is one matrix-vector product per request: BLAS threads only compete with the
    # event loop for the cores (p99 at 200 req/s: 76 ms with them, 10 ms without).
    threadpool_limits(limits=1, user_api="blas")
    app = create_app(runtime, queue)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower())
    finally:
        queue.close()
        runtime.close()


if __name__ == "__main__":
    main()
