"""A user's own data set as two CSV files, split by the paper's rule.

* interactions: a header naming (at least) a user and an item column, then one row per
  interaction; ids are arbitrary strings (``"u17"``, ``"B00X4WHP5E"``...), not necessarily ints.
* items: a header naming (at least) an id and a text column, then one row per item; texts
  may hold commas, quotes and newlines (standard CSV quoting).

Files are UTF-8 (a byte-order mark, as spreadsheet exports write, is accepted). Ids become
dense 0-based ids: users in order of first appearance, items in the order of the items file;
:func:`read_csv_interactions` returns that mapping with the interactions.
"""

from __future__ import annotations

from pathlib import Path

from models.data.dataset import ColdStartDataset, as_pairs
from models.data.errors import DataFormatError
from models.data.readers import read_csv_rows
from models.data.split import RawInteractions


def read_csv_interactions(
    interactions_path: str | Path,
    items_path: str | Path,
    name: str = "csv",
    item_kind: str = "item",
    user_column: str = "user",
    item_column: str = "item",
    id_column: str = "item",
    text_column: str = "text",
) -> RawInteractions:
    """All interactions and item texts of the two files, with their source ids, unsplit.

    Raises:
        DataFormatError: naming file and line, for a missing file or column, a row with the
            wrong number of fields, an empty id, an item id listed twice in the items file,
            or an interaction whose item is not in the items file.
    """
    items_path, interactions_path = Path(items_path), Path(interactions_path)
    item_index: dict[str, int] = {}
    item_line: list[int] = []
    texts: list[str] = []
    for line, item, text in read_csv_rows(items_path, (id_column, text_column)):
        if not item:
            raise DataFormatError(items_path, f"empty {id_column!r}", line)
        if item in item_index:
            message = f"item id {item!r} already on line {item_line[item_index[item]]}"
            raise DataFormatError(items_path, message, line)
        item_index[item] = len(texts)
        item_line.append(line)
        texts.append(text)

    user_index: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for line, user, item in read_csv_rows(interactions_path, (user_column, item_column)):
        if not user:
            raise DataFormatError(interactions_path, f"empty {user_column!r}", line)
        if item not in item_index:
            raise DataFormatError(
                interactions_path, f"item id {item!r} is not in {items_path}", line
            )
        pairs.append((user_index.setdefault(user, len(user_index)), item_index[item]))
    return RawInteractions(
        name=name,
        item_kind=item_kind,
        item_texts=tuple(texts),
        pairs=as_pairs(pairs),
        user_ids=tuple(user_index),
        item_ids=tuple(item_index),
    )


def load_csv_dataset(
    interactions_path: str | Path,
    items_path: str | Path,
    seed: int = 0,
    name: str = "csv",
    item_kind: str = "item",
    user_column: str = "user",
    item_column: str = "item",
    id_column: str = "item",
    text_column: str = "text",
) -> ColdStartDataset:
    """A CSV data set with the paper's cold-start split drawn from ``seed``.

    Use :func:`read_csv_interactions` instead when the source ids are needed (its
    ``user_ids``/``item_ids`` map dense ids back); both read the files the same way.
    """
    raw = read_csv_interactions(
        interactions_path,
        items_path,
        name=name,
        item_kind=item_kind,
        user_column=user_column,
        item_column=item_column,
        id_column=id_column,
        text_column=text_column,
    )
    return raw.split(seed)
