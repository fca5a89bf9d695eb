"""Small readers shared by the loaders: CSV pair files with a header."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from models.data.dataset import as_pairs
from models.data.errors import DataFormatError, check_id, parse_int, require_file


def read_pairs_csv(
    path: Path,
    n_users: int | None = None,
    n_items: int | None = None,
    user_column: str = "user",
    item_column: str = "item",
) -> np.ndarray:
    """Read ``user,item`` integer pairs from a CSV file with a header line.

    Ids are checked against ``n_users``/``n_items`` when given; every error names the line.
    """
    path = require_file(path)
    pairs: list[tuple[int, int]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataFormatError(path, "empty file (expected a header line)", 1)
        header = [name.strip() for name in header]
        for column in (user_column, item_column):
            if column not in header:
                raise DataFormatError(path, f"header has no column {column!r}: {header}", 1)
        user_at, item_at = header.index(user_column), header.index(item_column)
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataFormatError(path, f"{len(row)} fields, header has {len(header)}", line)
            user = parse_int(row[user_at].strip(), path, line, user_column)
            item = parse_int(row[item_at].strip(), path, line, item_column)
            if n_users is not None:
                check_id(user, n_users, path, line, "user id")
            elif user < 0:
                raise DataFormatError(path, f"negative user id {user}", line)
            if n_items is not None:
                check_id(item, n_items, path, line, "item id")
            elif item < 0:
                raise DataFormatError(path, f"negative item id {item}", line)
            pairs.append((user, item))
    return as_pairs(pairs)
