"""Users: their real interactions in, their recommendations out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from services.api.dependencies import (
    COLD_FLAG,
    ERRORS,
    WRITES,
    CategoryQuery,
    PathId,
    Pool,
    RankingDep,
    RuntimeDep,
)
from services.api.schemas import (
    InteractionsAccepted,
    InteractionsIn,
    Recommendations,
    UserOut,
)
from services.index import PointQuery
from services.runtime import Runtime
from services.store import UnknownIds

router = APIRouter(prefix="/v1", tags=["users"])


@router.post(
    "/interactions",
    response_model=InteractionsAccepted,
    responses=ERRORS,
    dependencies=WRITES,
)
def post_interactions(body: InteractionsIn, runtime: RuntimeDep) -> InteractionsAccepted:
    """Record real interactions (repeats are no-ops); all or nothing. A user id seen for the
    first time is added (recommended from a folded-in vector until a model version is
    trained with them); an unknown item id is a 404."""
    pairs = [(i.user_id, i.item_id) for i in body.interactions]
    try:
        new = runtime.store.add_interactions(pairs)
    except UnknownIds as error:
        raise HTTPException(404, str(error)) from None
    return InteractionsAccepted(received=len(pairs), new=new)


@router.get("/users/{user_id}", response_model=UserOut, responses=ERRORS)
def get_user(user_id: PathId, runtime: RuntimeDep) -> UserOut:
    """How many real interactions the user has, and where their recommendations start."""
    summary = runtime.store.user_summary(user_id)
    if summary is None:
        raise HTTPException(404, f"user {user_id!r} is unknown")
    index, interactions = summary
    vector = "model"
    if index is None:
        vector = "folded_in" if runtime.store.seen_item_indices(user_id) else None
    return UserOut(
        id=user_id,
        interactions=interactions,
        user_vector=vector,
        model_version=runtime.index.active_version("items"),
    )


@router.get("/users/{user_id}/recommendations", response_model=Recommendations, responses=ERRORS)
async def recommendations(
    user_id: PathId,
    runtime: RuntimeDep,
    ranking: RankingDep,
    k: Annotated[int, Query(ge=1, le=100)] = 20,
    pool: Pool = "all",
    category: CategoryQuery = None,
) -> JSONResponse:
    """The user's top-k items by the backbone's score, items they interacted with left out.

    The look-ups run on the event loop (they are remembered: microseconds, a database
    read for a user's first query); the ranking, the costly part, is batched with the
    queries that arrive meanwhile (:mod:`services.batching`). A user the model version
    was not trained with is ranked from a vector folded in from their items.
    """
    store = runtime.store
    user_index = store.user_index(user_id)
    seen = store.seen_item_indices(user_id)
    if user_index is None:
        hits, version = await run_in_threadpool(
            folded_in_top, runtime, user_id, seen, k, pool, category
        )
        source = "folded_in"
    else:
        query = PointQuery(user_index, k, seen, COLD_FLAG[pool], category)
        hits, version = await ranking.submit(query)
        source = "model"
    ids = store.item_ids([index for index, _ in hits])
    # Built as JSON directly: validating our own answer against the response model
    # again is work on the hottest path (the model still documents it in OpenAPI).
    return JSONResponse(
        {
            "user_id": user_id,
            "pool": pool,
            "category": category,
            "model_version": version,
            "user_vector": source,
            "items": [{"item_id": ids[i], "score": s} for i, s in hits if i in ids],
        }
    )


def folded_in_top(
    runtime: Runtime,
    user_id: str,
    seen: tuple[int, ...],
    k: int,
    pool: Pool,
    category: str | None = None,
) -> tuple[list[tuple[int, float]], str | None]:
    """The top ``k`` of ``pool`` (of ``category``) for a user outside the model, and the
    version answering.

    Raises:
        HTTPException: 404 for a user with no interaction with an indexed item (unknown,
            or whose items are all still unindexed); 409 while an item's vector is not
            written yet.
    """
    if not seen:
        raise HTTPException(404, f"user {user_id!r} is unknown or has no interactions yet")
    try:
        vector = runtime.fold_in_user(seen)
    except KeyError:  # an item accepted, its content vector not written yet
        raise HTTPException(409, "the user's items have no vectors yet: retry soon") from None
    version = runtime.index.active_version("items")
    return runtime.index.top("items", vector, k, seen, COLD_FLAG[pool], category), version
