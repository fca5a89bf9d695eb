"""Request and response bodies of the REST API: the limits here are the API's contract."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.fields import TEXT_MAX_LENGTH, InteractionFields, ItemFields, StorableText


class ItemIn(ItemFields):
    """A new item (POST /v1/items, alone or in a list)."""


class ItemPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StorableText = Field(
        min_length=1, max_length=TEXT_MAX_LENGTH, description="The new text."
    )


class ItemAccepted(BaseModel):
    item_id: str
    job_id: str
    status: str


class SimulatedUser(BaseModel):
    user_id: str
    score: float = Field(
        description="The refiner's probability that this user interacts with the item, among "
        "the item's candidates (users come best first)."
    )
    source: Literal["refiner", "refiner+lm"] = Field(
        description="What the score read: `refiner`, the filter signals alone; `refiner+lm`, "
        "those and the LM simulator's Yes/No answer for this user (model versions whose "
        "validation kept the LM)."
    )
    evidence: dict[str, float | None] | None = Field(
        default=None,
        description="Why the warm-up kept this user: what the refiner read, each filter "
        "signal standardised over the item's candidate pool, `history length` (log 1 + "
        "the user's interactions), `merged` (the filter's score) and, where the LM was "
        "asked, `lm P(yes)`. None for a warm-up recorded before evidence was kept.",
    )


class ItemOut(BaseModel):
    id: str
    status: Literal["queued", "warming", "warm", "degraded", "failed"]
    origin: str
    categories: list[str]
    model_version: str | None
    simulated_users: list[SimulatedUser]
    timings: dict[str, float] | None
    error: str | None
    created_at: datetime
    warmed_at: datetime | None
    withdrawn_at: datetime | None = Field(
        description="When it was withdrawn (DELETE): in no recommendation since; kept for audit."
    )
    published_at: datetime | None = Field(
        description="When it was published, where its import gave a timestamp."
    )


class Interaction(InteractionFields):
    """One real interaction of POST /v1/interactions."""


class InteractionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interactions: list[Interaction] = Field(min_length=1, max_length=10_000)


class InteractionsAccepted(BaseModel):
    received: int
    new: int


class Recommendation(BaseModel):
    item_id: str
    score: float


#: Where a user's vector comes from: trained with the model version, or folded in from the
#: items of a user the version has not seen (least squares against the item vectors).
UserVector = Literal["model", "folded_in"]


class Recommendations(BaseModel):
    user_id: str
    pool: str
    category: str | None
    model_version: str | None
    user_vector: UserVector | None = Field(
        description="`model`: the user's vector of the model version; `folded_in`: a user "
        "the version was not trained with, their vector fitted now to the items they "
        "interacted with; None: no vector (see `fallback`)."
    )
    fallback: Literal["popular"] | None = Field(
        description="`popular`: no model for this user (no model version yet, or no "
        "interaction with an item that has a vector), so the items with the most real "
        "interactions recently, then the newest; score is the item's count of recent "
        "interactions (0 for the newest). None: ranked by the model."
    )
    items: list[Recommendation]


class UserOut(BaseModel):
    id: str
    interactions: int = Field(description="Real interactions recorded for the user.")
    user_vector: UserVector | None = Field(
        description="What their recommendations start from (see `Recommendations`); None: "
        "no interaction with an item that has a vector yet, so no recommendation."
    )
    model_version: str | None


class Neighbors(BaseModel):
    item_id: str
    pool: str
    category: str | None
    model_version: str | None
    items: list[Recommendation] = Field(
        description="The items a user whose vector were this item's would be recommended "
        "(inner product with the item's vector), the item itself left out."
    )


class JobOut(BaseModel):
    id: str
    kind: str
    item_id: str | None
    status: str
    attempts: int
    error: str | None
    result: dict | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Problem(BaseModel):
    """Every 4xx/5xx body: what went wrong, in words."""

    detail: str | list
