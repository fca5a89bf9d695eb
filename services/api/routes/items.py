"""Items: post new ones (warmed in the background), read its warm-up and its neighbours,
change its text, withdraw it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Response
from pydantic import Field

from services.api.dependencies import (
    COLD_FLAG,
    ERRORS,
    WRITES,
    CategoryQuery,
    PathId,
    Pool,
    QueueDep,
    RuntimeDep,
)
from services.api.schemas import (
    ItemAccepted,
    ItemIn,
    ItemOut,
    ItemPatch,
    Neighbors,
    Recommendation,
    SimulatedUser,
)
from services.queues import TaskQueue
from services.runtime import Runtime
from services.store import Accepted, ItemConflict, ItemRecord, NewItem, UnknownIds
from services.warmup import show_by_content, withdraw_item

router = APIRouter(prefix="/v1/items", tags=["items"])


#: Writes of an item's text: 202 when it is queued for a warm-up, 200 for a repeat.
TEXT_WRITE = {
    "status_code": 202,
    "response_model": ItemAccepted,
    "responses": {**ERRORS, 200: {"model": ItemAccepted}},
    "dependencies": WRITES,
}


#: The most items one POST may carry (their texts are embedded together at once).
BATCH_MAX = 1000
ItemsIn = Annotated[
    ItemIn | Annotated[list[ItemIn], Field(min_length=1, max_length=BATCH_MAX)],
    Body(description=f"One item, or a list of up to {BATCH_MAX} (stored all or nothing)."),
]


@router.post(
    "",
    **{**TEXT_WRITE, "response_model": ItemAccepted | list[ItemAccepted]},
)
def post_items(
    items: ItemsIn, response: Response, runtime: RuntimeDep, queue: QueueDep
) -> ItemAccepted | list[ItemAccepted]:
    """Store the item (or each of a list: all or nothing), index its content vector, and
    enqueue its warm-up; a list answers with a list, in its order.

    Idempotent on the id: the same text again answers with the first job (200 when
    nothing was new); another text under a known id is a 409, and then nothing is stored.
    """
    batch = items if isinstance(items, list) else [items]
    try:
        accepted = runtime.store.submit_items(
            [NewItem(item.id, item.text, item.categories) for item in batch]
        )
    except ItemConflict as error:
        raise HTTPException(409, str(error)) from None
    answers = queued(runtime, queue, response, accepted)
    return answers if isinstance(items, list) else answers[0]


@router.get("/{item_id}", response_model=ItemOut, responses=ERRORS)
def get_item(item_id: PathId, runtime: RuntimeDep) -> ItemOut:
    record = runtime.store.get_item(item_id)
    if record is None:
        raise HTTPException(404, f"item {item_id!r} is unknown")
    return described(runtime, record)


@router.patch("/{item_id}", **TEXT_WRITE)
def patch_item(
    item_id: PathId, patch: ItemPatch, response: Response, runtime: RuntimeDep, queue: QueueDep
) -> ItemAccepted:
    """New text for a posted item: its content vector is rewritten at once and it is warmed
    again (202, a new job); the same text answers 200 with its latest job."""
    try:
        record, job, changed = runtime.store.change_item_text(item_id, patch.text)
    except UnknownIds:
        raise HTTPException(404, f"item {item_id!r} is unknown") from None
    except ItemConflict as error:
        raise HTTPException(409, str(error)) from None
    (answer,) = queued(
        runtime, queue, response, [Accepted(record.id, job.id, record.status, changed)]
    )
    return answer


def queued(
    runtime: Runtime, queue: TaskQueue, response: Response, accepted: list[Accepted]
) -> list[ItemAccepted]:
    """The answer to a write of items' texts: new texts are shown by their content vectors
    at once and their warm-ups enqueued (202; before any model version, they wait); a
    write with nothing new changes nothing (200)."""
    new = list({a.item_id: a for a in accepted if a.created}.values())
    if not new:
        response.status_code = 200
    elif runtime.store.active_version() is not None:
        show_by_content(runtime, [a.item_id for a in new])
        for answer in new:
            queue.enqueue(answer.item_id, answer.job_id)
    # else: no model version yet (a service started empty): the items wait, queued, for
    # the first one, which warms every item not warm (services.jobs.requeue_pending).
    return [ItemAccepted(item_id=a.item_id, job_id=a.job_id, status=a.status) for a in accepted]


@router.delete("/{item_id}", response_model=ItemOut, responses=ERRORS, dependencies=WRITES)
def delete_item(item_id: PathId, runtime: RuntimeDep) -> ItemOut:
    """Withdraw the item: out of every recommendation (and neighbour list) at once, and
    out of every model version trained after; its record, simulated users and interactions
    stay readable. A repeat answers the same."""
    try:
        record = withdraw_item(runtime, item_id)
    except UnknownIds:
        raise HTTPException(404, f"item {item_id!r} is unknown") from None
    return described(runtime, record)


def described(runtime: Runtime, record: ItemRecord) -> ItemOut:
    """The item as the API shows it: its record and its simulated users."""
    users = runtime.store.simulated_detail(record.id)
    source = "refiner"
    if users and runtime.asked_lm(record.model_version):
        source = "refiner+lm"
    return ItemOut(
        id=record.id,
        status=record.status,
        origin=record.origin,
        categories=record.categories or [],
        model_version=record.model_version,
        simulated_users=[
            SimulatedUser(user_id=u, score=p, source=source, evidence=why) for u, p, why in users
        ],
        timings=record.timings,
        error=record.error,
        created_at=record.created_at,
        warmed_at=record.warmed_at,
        withdrawn_at=record.withdrawn_at,
        published_at=record.published_at,
    )


@router.get("/{item_id}/neighbors", response_model=Neighbors, responses=ERRORS)
def get_neighbors(
    item_id: PathId,
    runtime: RuntimeDep,
    k: Annotated[int, Query(ge=1, le=100)] = 20,
    pool: Pool = "all",
    category: CategoryQuery = None,
) -> Neighbors:
    """The items nearest to this one by its served vector (a posted item's content vector
    until its warm-up, then its warmed one)."""
    record = runtime.store.get_item(item_id)
    if record is None:
        raise HTTPException(404, f"item {item_id!r} is unknown")
    if record.withdrawn_at is not None:
        raise HTTPException(409, f"item {item_id!r} was withdrawn")
    index = runtime.index
    version = index.active_version("items")
    no_vector = HTTPException(409, f"item {item_id!r} has no vector yet: retry soon")
    if record.index is None:  # accepted, its content vector not written yet
        raise no_vector
    try:
        vector = index.vectors("items", [record.index])[0]
    except KeyError:
        raise no_vector from None
    hits = index.top("items", vector, k, [record.index], COLD_FLAG[pool], category)
    ids = runtime.store.item_ids([row for row, _ in hits])
    return Neighbors(
        item_id=item_id,
        pool=pool,
        category=category,
        model_version=version,
        items=[Recommendation(item_id=ids[row], score=s) for row, s in hits if row in ids],
    )
