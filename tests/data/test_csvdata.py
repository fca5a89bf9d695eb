"""Generic CSV data sets: string ids, quoted texts, dense id maps, errors with file and line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.data import DATASETS, load_dataset
from models.data.csvdata import load_csv_dataset, read_csv_interactions
from models.data.errors import DataFormatError
from models.data.split import RawInteractions

N_USERS, N_ITEMS = 25, 30

#: Texts CSV must quote: commas, double quotes, a newline, non-ASCII.
SPECIAL_TEXTS = ["Dune, part one", 'The "Best" Book', "Two\nlines", "Crème brûlée"]

#: (items rows, interactions rows) as written to the files.
Rows = tuple[list[list[str]], list[list[str]]]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def fake_data(folder: Path) -> Rows:
    """Write ``items.csv`` (item,text) and ``interactions.csv`` (user,item,rating)."""
    rng = np.random.default_rng(0)
    item_ids = [f"B{index:03d}X" for index in range(N_ITEMS)][::-1]  # not in sorted order
    texts = [*SPECIAL_TEXTS, *(f"Item number {i}" for i in range(len(SPECIAL_TEXTS), N_ITEMS))]
    items = [[item, text] for item, text in zip(item_ids, texts, strict=True)]
    users = [f"user-{rng.integers(10**6)}" for _ in range(N_USERS)]
    interactions = [[user, item, "5"] for user in users for item in item_ids if rng.random() < 0.4]
    write_csv(folder / "items.csv", ["item", "text"], items)
    write_csv(folder / "interactions.csv", ["user", "item", "rating"], interactions)
    return items, interactions


@pytest.fixture()
def data(tmp_path: Path) -> Rows:
    return fake_data(tmp_path)


def read(folder: Path, **kwargs: str) -> RawInteractions:
    return read_csv_interactions(folder / "interactions.csv", folder / "items.csv", **kwargs)


def test_ids_are_mapped_densely_and_texts_kept_verbatim(tmp_path: Path, data: Rows) -> None:
    items, interactions = data
    raw = read(tmp_path)
    assert raw.item_ids == tuple(item for item, _ in items)  # items file order
    assert raw.item_texts == tuple(text for _, text in items)
    assert raw.item_texts[:4] == tuple(SPECIAL_TEXTS)
    first_seen = list(dict.fromkeys(user for user, _, _ in interactions))
    assert raw.user_ids == tuple(first_seen)
    expected = [(first_seen.index(u), raw.item_ids.index(i)) for u, i, _ in interactions]
    np.testing.assert_array_equal(raw.pairs, np.array(expected))


def test_load_splits_every_interaction(tmp_path: Path, data: Rows) -> None:
    _, interactions = data
    dataset = load_csv_dataset(
        tmp_path / "interactions.csv",
        tmp_path / "items.csv",
        seed=1,
        name="books",
        item_kind="book",
    )
    assert (dataset.name, dataset.item_kind) == ("books", "book")
    assert (dataset.n_users, dataset.n_items) == (N_USERS, N_ITEMS)
    assert dataset.n_interactions == len(interactions)
    assert len(dataset.cold_val_items) + len(dataset.cold_test_items) == 6  # 20% of 30
    again = load_csv_dataset(tmp_path / "interactions.csv", tmp_path / "items.csv", seed=1)
    assert np.array_equal(again.cold_test_items, dataset.cold_test_items)


def test_custom_column_names(tmp_path: Path) -> None:
    write_csv(tmp_path / "items.csv", ["asin", "title", "price"], [["a1", "Lamp", "3"]])
    write_csv(tmp_path / "interactions.csv", ["product", "customer"], [["a1", "c9"]] * 2)
    raw = read(
        tmp_path,
        user_column="customer",
        item_column="product",
        id_column="asin",
        text_column="title",
    )
    assert (raw.user_ids, raw.item_ids, raw.item_texts) == (("c9",), ("a1",), ("Lamp",))
    assert raw.pairs.tolist() == [[0, 0], [0, 0]]


@pytest.mark.parametrize(
    ("file", "row", "message"),
    [
        ("interactions.csv", "someone,NOPE,5", "item id 'NOPE' is not in"),
        ("interactions.csv", "someone,B001X", "2 fields, header has 3"),
        ("interactions.csv", ",B001X,5", "empty 'user'"),
        ("items.csv", "B001X,again", "item id 'B001X' already on line"),
        ("items.csv", ',"no id"', "empty 'item'"),
    ],
)
def test_errors_name_file_and_line(
    tmp_path: Path, data: Rows, file: str, row: str, message: str
) -> None:
    items, interactions = data
    path = tmp_path / file
    with path.open("a", encoding="utf-8") as handle:
        handle.write(row + "\n")
    # The items file spans one more line than it has rows: one text holds a newline.
    line = (len(interactions) if file == "interactions.csv" else len(items) + 1) + 2
    with pytest.raises(DataFormatError, match=message) as error:
        read(tmp_path)
    assert (error.value.path, error.value.line) == (path, line)
    assert f"{file}:{line}:" in str(error.value)


def test_missing_column_and_file(tmp_path: Path, data: Rows) -> None:
    with pytest.raises(DataFormatError, match="no column 'customer'") as error:
        read(tmp_path, user_column="customer")
    assert (error.value.path.name, error.value.line) == ("interactions.csv", 1)
    (tmp_path / "items.csv").unlink()
    with pytest.raises(DataFormatError, match="file not found") as error:
        read(tmp_path)
    assert error.value.path == tmp_path / "items.csv"


def test_registry_loads_csv_relative_to_data_dir(tmp_path: Path, data: Rows) -> None:
    dataset = load_dataset(
        "csv",
        tmp_path,
        seed=2,
        interactions_path="interactions.csv",
        items_path="items.csv",
        item_kind="book",
    )
    direct = load_csv_dataset(
        tmp_path / "interactions.csv", tmp_path / "items.csv", seed=2, item_kind="book"
    )
    assert dataset.fingerprint == direct.fingerprint
    with pytest.raises(TypeError, match="items_path"):
        load_dataset("csv", tmp_path, interactions_path="interactions.csv")


def test_registry_rejects_unknown_names() -> None:
    assert DATASETS == ("citeulike", "ml-100k", "ml-1m", "csv")
    with pytest.raises(ValueError, match="unknown data set 'ml-20m'; known: citeulike, ml-100k"):
        load_dataset("ml-20m", ".")


def test_pair_file_rejects_negative_ids_without_a_limit(tmp_path) -> None:
    from models.data.readers import read_pairs_csv

    path = tmp_path / "pairs.csv"
    path.write_text("user,item\n0,1\n-3,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pairs.csv:3: user id -3 is negative"):
        read_pairs_csv(path)
