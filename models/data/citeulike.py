"""CiteULike-a (Wang, Chen & Li, IJCAI 2013) with the split published by the paper's authors.

Files under ``<data_dir>/citeulike-a/`` (see the data README): ``titles.txt`` (line k+1 is
article k), ``users.dat`` (line u+1: ``N item item ...``), ``split/{part}.csv`` (``user,item``),
and optionally ``item-tag.dat`` + ``tags.dat``.

Tags are off by default: the users who saved an article wrote them, so they leak
post-interaction signal a brand-new article would not have.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.dataset import SPLIT_NAMES, ColdStartDataset, as_pairs
from models.data.errors import DataFormatError, check_id, parse_int, require_file
from models.data.readers import read_pairs_csv

FOLDER = "citeulike-a"


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without their line endings."""
    with require_file(path).open(encoding="utf-8", errors="replace") as handle:
        return handle.read().splitlines()


def read_users_dat(path: Path, n_items: int) -> np.ndarray:
    """All (user, item) pairs of ``users.dat``; user id = 0-based line number."""
    pairs: list[tuple[int, int]] = []
    for user, text in enumerate(read_lines(path)):
        line = user + 1
        tokens = text.split()
        if not tokens:
            raise DataFormatError(path, "empty line (expected 'N item item ...')", line)
        count = parse_int(tokens[0], path, line, "item count")
        if count != len(tokens) - 1:
            raise DataFormatError(path, f"count {count} but {len(tokens) - 1} items listed", line)
        for token in tokens[1:]:
            item = check_id(parse_int(token, path, line, "item id"), n_items, path, line, "item id")
            pairs.append((user, item))
    return as_pairs(pairs)


def read_item_tags(folder: Path, n_items: int) -> list[list[str]]:
    """Tag names of every article from ``item-tag.dat`` and ``tags.dat``."""
    names = read_lines(folder / "tags.dat")
    item_tags: list[list[str]] = []
    path = folder / "item-tag.dat"
    lines = read_lines(path)
    if len(lines) != n_items:
        raise DataFormatError(path, f"{len(lines)} lines but {n_items} articles in titles.txt")
    for index, text in enumerate(lines):
        tokens = text.split()
        ids = [parse_int(t, path, index + 1, "tag id") for t in tokens[1:]]
        item_tags.append([names[check_id(t, len(names), path, index + 1, "tag id")] for t in ids])
    return item_tags


def load_citeulike(data_dir: str | Path, use_tags: bool = False) -> ColdStartDataset:
    """Load CiteULike-a with the published cold/warm split.

    Args:
        data_dir: folder that holds ``citeulike-a/``.
        use_tags: append the article's tags to its title (leaks post-interaction signal;
            never for headline numbers).
    """
    folder = Path(data_dir) / FOLDER
    titles = [title.strip() for title in read_lines(folder / "titles.txt")]
    if use_tags:
        tags = read_item_tags(folder, len(titles))
        titles = [
            f"{t}. Tags: {', '.join(ts)}" if ts else t for t, ts in zip(titles, tags, strict=True)
        ]
    users = read_users_dat(folder / "users.dat", len(titles))
    n_users = int(users[:, 0].max()) + 1
    splits = {
        part: read_pairs_csv(folder / "split" / f"{part}.csv", n_users, len(titles))
        for part in SPLIT_NAMES
    }
    # Every interaction of users.dat must be in exactly one split file, and nothing else.
    n_items = len(titles)
    split_keys = np.sort(np.concatenate([p[:, 0] * n_items + p[:, 1] for p in splits.values()]))
    user_keys = np.sort(users[:, 0] * n_items + users[:, 1])
    if not np.array_equal(split_keys, user_keys):
        raise DataFormatError(
            folder / "split",
            f"split files hold {len(split_keys)} pairs, users.dat {len(user_keys)}, and they"
            " are not the same pairs",
        )
    return ColdStartDataset(
        name="citeulike" + ("+tags" if use_tags else ""),
        item_kind="paper",
        n_users=n_users,
        item_texts=tuple(titles),
        splits=splits,
    )
