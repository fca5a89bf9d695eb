"""What the routes share: the runtime, the queue and the ranking batcher of the app they
serve (kept on ``app.state`` by :func:`services.api.app.create_app`), the API-key check for
writes, and the rules for ids in paths."""

from __future__ import annotations

import secrets
from typing import Annotated, Literal

from fastapi import Depends, Header, HTTPException, Path, Query, Request

from services.api.schemas import Problem
from services.batching import MicroBatcher
from services.fields import CATEGORY_MAX_LENGTH, ID_MAX_LENGTH, ID_PATTERN
from services.queues import TaskQueue
from services.runtime import Runtime

#: Every refusal's body: a ``detail`` that says why.
ERRORS = {code: {"model": Problem} for code in (400, 401, 404, 409, 413, 422)}

#: Which items a ranking draws from: every item, the data set's (warm), or posted ones.
Pool = Literal["all", "warm", "cold"]
#: Each pool as the index's ``cold`` flag.
COLD_FLAG: dict[str, bool | None] = {"all": None, "warm": False, "cold": True}
#: Each pool as the store's item origin (the fallback ranking reads the store).
POOL_ORIGIN: dict[str, str | None] = {"all": None, "warm": "dataset", "cold": "api"}

#: Restricts a ranking to the items that carry this category (none: every item).
CategoryQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=CATEGORY_MAX_LENGTH, pattern=ID_PATTERN),
]

#: Ids in paths follow the rules of ids in bodies: garbage is a 422 before a store sees it.
PathId = Annotated[str, Path(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def get_queue(request: Request) -> TaskQueue:
    return request.app.state.queue


def get_ranking(request: Request) -> MicroBatcher:
    return request.app.state.ranking


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
QueueDep = Annotated[TaskQueue, Depends(get_queue)]
RankingDep = Annotated[MicroBatcher, Depends(get_ranking)]


def require_key(runtime: RuntimeDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Writes need the configured API key (none configured: open)."""
    expected = runtime.settings.api_key
    if expected is None:
        return
    # Constant time: a comparison that stops at the first difference leaks the key.
    secret = expected.get_secret_value().encode()
    if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), secret):
        raise HTTPException(401, "a valid X-API-Key header is required for this endpoint")


#: The dependencies of every write route.
WRITES = [Depends(require_key)]


#: What the routes that read the service's data (not the probes) depend on where
#: ``LLMINS_PROTECT_READS`` says so (a user's recommendations reveal what they interacted
#: with); added when the app is built, so open reads cost the hot path nothing.
PROTECTED_READS = [Depends(require_key)]
