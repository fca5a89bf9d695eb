"""Request and response bodies of the REST API: the limits here are the API's contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Ids: printable, no surrounding whitespace, short enough to index, no '/' (an id is a
#: path segment of the API: an item posted as "a/b" could never be read back).
#: The path parameters (item, user and job ids) follow the same rules.
ID_PATTERN = r"^[A-Za-z0-9._:@+-]+$"
ID_MAX_LENGTH = 128
Identifier = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)


def _no_nul(text: str) -> str:
    """PostgreSQL refuses NUL in text: let that be a 422, not a 500 from the store. (Lone
    surrogates, the other text no database stores, pydantic already refuses.)"""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


#: Free text that reaches the store.
StorableText = Annotated[str, AfterValidator(_no_nul)]
#: A category label: the rules of ids (it is a query parameter), up to 64 characters.
CATEGORY_MAX_LENGTH = 64
Category = Annotated[str, Field(min_length=1, max_length=CATEGORY_MAX_LENGTH, pattern=ID_PATTERN)]


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Identifier
    text: StorableText = Field(min_length=1, max_length=10_000, description="Title or description.")
    categories: list[Category] = Field(
        default_factory=list,
        max_length=32,
        description="Labels recommendations and neighbours can be restricted to (`?category=`).",
    )


class ItemPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StorableText = Field(min_length=1, max_length=10_000, description="The new text.")


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


class Interaction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Identifier
    item_id: str = Identifier


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
    user_vector: UserVector = Field(
        description="`model`: the user's vector of the model version; `folded_in`: a user "
        "the version was not trained with, their vector fitted now to the items they "
        "interacted with."
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
