"""Readers shared by the loaders: CSV files with a header, every error naming file and line."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.data.dataset import as_pairs
from models.data.errors import DataFormatError, check_id, parse_int, require_file


def read_csv_rows(path: Path, columns: tuple[str, str]) -> Iterator[tuple[int, str, str]]:
    """(line, first column, second column) of every non-empty row of a CSV file with a header.

    ``line`` is the 1-based line where the row ends, so errors point at the right place even
    after a quoted multi-line text.
    """
    with require_file(path).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not header:
            raise DataFormatError(path, "empty file (expected a header line)", 1)
        for column in columns:
            if column not in header:
                raise DataFormatError(path, f"header has no column {column!r}: {header}", 1)
        first_at, second_at = (header.index(column) for column in columns)
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                message = f"{len(row)} fields, header has {len(header)}"
                raise DataFormatError(path, message, reader.line_num)
            yield reader.line_num, row[first_at].strip(), row[second_at].strip()


def read_pairs_csv(
    path: Path,
    n_users: int | None = None,
    n_items: int | None = None,
    user_column: str = "user",
    item_column: str = "item",
) -> np.ndarray:
    """Read integer ``user,item`` pairs from a CSV file with a header line.

    Ids must be non-negative and are checked against ``n_users``/``n_items`` when given.
    """
    pairs: list[tuple[int, int]] = []
    for line, user_text, item_text in read_csv_rows(path, (user_column, item_column)):
        user = parse_int(user_text, path, line, user_column)
        item = parse_int(item_text, path, line, item_column)
        check_id(user, n_users, path, line, "user id")
        check_id(item, n_items, path, line, "item id")
        pairs.append((user, item))
    return as_pairs(pairs)
