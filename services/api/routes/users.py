"""Users: their real interactions in, their recommendations out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from services.api.dependencies import ERRORS, WRITES, PathId, RankingDep, RuntimeDep
from services.api.schemas import InteractionsAccepted, InteractionsIn, Recommendations
from services.index import PointQuery
from services.store import UnknownIds

router = APIRouter(prefix="/v1", tags=["users"])


@router.post(
    "/interactions",
    response_model=InteractionsAccepted,
    responses=ERRORS,
    dependencies=WRITES,
)
def post_interactions(body: InteractionsIn, runtime: RuntimeDep) -> InteractionsAccepted:
    """Record real interactions (repeats are no-ops); all or nothing."""
    pairs = [(i.user_id, i.item_id) for i in body.interactions]
    try:
        new = runtime.store.add_interactions(pairs)
    except UnknownIds as error:
        raise HTTPException(404, str(error)) from None
    return InteractionsAccepted(received=len(pairs), new=new)


@router.get("/users/{user_id}/recommendations", response_model=Recommendations, responses=ERRORS)
async def recommendations(
    user_id: PathId,
    runtime: RuntimeDep,
    ranking: RankingDep,
    k: Annotated[int, Query(ge=1, le=100)] = 20,
    pool: Literal["all", "warm", "cold"] = "all",
) -> JSONResponse:
    """The user's top-k items by the backbone's score, items they interacted with left out.

    The look-ups run on the event loop (they are remembered: microseconds, a database
    read for a user's first query); the ranking, the costly part, is batched with the
    queries that arrive meanwhile (:mod:`services.batching`).
    """
    store = runtime.store
    user_index = store.user_index(user_id)
    if user_index is None:
        raise HTTPException(404, f"user {user_id!r} is unknown")
    seen = store.seen_item_indices(user_id)
    cold = {"all": None, "warm": False, "cold": True}[pool]
    hits, version = await ranking.submit(PointQuery(user_index, k, seen, cold))
    ids = store.item_ids([index for index, _ in hits])
    # Built as JSON directly: validating our own answer against the response model
    # again is work on the hottest path (the model still documents it in OpenAPI).
    return JSONResponse(
        {
            "user_id": user_id,
            "pool": pool,
            "model_version": version,
            "items": [{"item_id": ids[i], "score": s} for i, s in hits if i in ids],
        }
    )
