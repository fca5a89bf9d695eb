"""What an item and an interaction may hold, wherever they come in: the REST API's bodies
and the import's rows are both checked against these, so a row the import accepts is one the
API would have accepted too."""

from __future__ import annotations

from typing import Annotated

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
TEXT_MAX_LENGTH = 10_000
CATEGORIES_MAX = 32


class ItemFields(BaseModel):
    """An item as a client gives it: id, text, categories."""

    model_config = ConfigDict(extra="forbid")

    id: str = Identifier
    text: StorableText = Field(
        min_length=1, max_length=TEXT_MAX_LENGTH, description="Title or description."
    )
    categories: list[Category] = Field(
        default_factory=list,
        max_length=CATEGORIES_MAX,
        description="Labels recommendations and neighbours can be restricted to (`?category=`).",
    )


class InteractionFields(BaseModel):
    """A real interaction as a client gives it: this user interacted with this item."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Identifier
    item_id: str = Identifier
