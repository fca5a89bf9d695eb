"""Users: their real interactions in, their recommendations out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from services.api.dependencies import (
    COLD_FLAG,
    ERRORS,
    POOL_ORIGIN,
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
from services.store import Store, UnknownIds

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
    was not trained with is ranked from a vector folded in from their items; a user no
    vector can be built for (no model version yet, an unknown user, no item with a vector)
    gets the popular fallback, labelled ``fallback``.
    """
    store = runtime.store
    user_index = store.user_index(user_id)
    if user_index is None:
        body = await run_in_threadpool(without_model_vector, runtime, user_id, k, pool, category)
    else:
        query = PointQuery(
            user_index, k, store.seen_item_indices(user_id), COLD_FLAG[pool], category
        )
        hits, version = await ranking.submit(query)
        body = {
            "model_version": version,
            "user_vector": "model",
            "fallback": None,
            "items": listed(store, hits),
        }
    # Built as JSON directly: validating our own answer against the response model
    # again is work on the hottest path (the model still documents it in OpenAPI).
    return JSONResponse({"user_id": user_id, "pool": pool, "category": category, **body})


def listed(store: Store, hits: list[tuple[int, float]]) -> list[dict]:
    """Ranked (row, score) pairs as the API lists items."""
    ids = store.item_ids([index for index, _ in hits])
    return [{"item_id": ids[i], "score": s} for i, s in hits if i in ids]


def without_model_vector(
    runtime: Runtime,
    user_id: str,
    k: int,
    pool: Pool,
    category: str | None = None,
) -> dict:
    """The answer for a user outside the active version: ranked from a vector folded in
    from their items where any has a vector, else the popular fallback.

    Raises:
        HTTPException: 409 while an item's vector is not written yet.
    """
    seen = runtime.store.seen_item_indices(user_id)
    version = runtime.index.active_version("items")
    if not seen or version is None:  # no item vectors, or no version indexed yet
        items = runtime.fallback.top(user_id, k, POOL_ORIGIN[pool], category)
        return {
            "model_version": version,
            "user_vector": None,
            "fallback": "popular",
            "items": [{"item_id": item, "score": score} for item, score in items],
        }
    try:
        vector = runtime.fold_in_user(seen)
    except KeyError:  # an item accepted, its content vector not written yet
        raise HTTPException(409, "the user's items have no vectors yet: retry soon") from None
    hits = runtime.index.top("items", vector, k, seen, COLD_FLAG[pool], category)
    return {
        "model_version": version,
        "user_vector": "folded_in",
        "fallback": None,
        "items": listed(runtime.store, hits),
    }
