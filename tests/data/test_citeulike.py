"""CiteULike-a on the real shared data: the counts the paper's published split must give."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data import load_dataset
from models.data.citeulike import FOLDER, load_citeulike
from models.data.dataset import ColdStartDataset
from models.data.errors import DataFormatError


@pytest.fixture(scope="module")
def citeulike(data_dir: Path) -> ColdStartDataset:
    return load_dataset("citeulike", data_dir, seed=123)  # published split: seed is unused


def test_published_counts(citeulike: ColdStartDataset) -> None:
    assert citeulike.summary() == {
        "name": "citeulike",
        "users": 5_551,
        "items": 16_980,
        "interactions": 204_986,
        "warm_items": 13_584,
        "cold_val_items": 1_698,
        "cold_test_items": 1_698,
        "warm_train": 132_073,
        "warm_val": 16_471,
        "warm_test": 16_482,
        "cold_val": 19_802,
        "cold_test": 20_158,
    }
    assert citeulike.item_kind == "paper"


def test_texts_are_titles_without_tags(citeulike: ColdStartDataset) -> None:
    assert citeulike.item_texts[0] == "The metabolic world of Escherichia coli is not small"
    assert not any("Tags:" in text for text in citeulike.item_texts)


def test_tags_are_appended_on_request(data_dir: Path, citeulike: ColdStartDataset) -> None:
    tagged = load_citeulike(data_dir, use_tags=True)
    assert tagged.name == "citeulike+tags"
    title, tags = tagged.item_texts[0].split(". Tags: ")
    assert title == citeulike.item_texts[0]
    assert {"metabolism", "ecoli", "systems_biology"} <= set(tags.split(", "))
    # Articles whose item-tag.dat line lists at least one tag.
    assert sum(". Tags: " in text for text in tagged.item_texts) == 13_519
    for part, pairs in citeulike.splits.items():
        assert (tagged.splits[part] == pairs).all(), part


def test_malformed_users_line_names_file_and_line(data_dir: Path, tmp_path: Path) -> None:
    # A tiny copy: the first titles of the real data; users.dat is read before the split files.
    folder = tmp_path / FOLDER
    folder.mkdir()
    titles = (data_dir / FOLDER / "titles.txt").read_text(encoding="utf-8").splitlines()
    (folder / "titles.txt").write_text("\n".join(titles[:5]) + "\n", encoding="utf-8")
    (folder / "users.dat").write_text("2 0 1\n3 2 x 4\n1 3\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="item id is not an integer: 'x'") as error:
        load_citeulike(tmp_path)
    assert error.value.line == 2
    assert "users.dat:2:" in str(error.value)


def test_split_files_must_hold_exactly_the_users_pairs(tmp_path: Path) -> None:
    """Same number of pairs but one of them different: the mismatch is caught."""
    folder = tmp_path / FOLDER
    (folder / "split").mkdir(parents=True)
    (folder / "titles.txt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    (folder / "users.dat").write_text("2 0 1\n2 2 3\n", encoding="utf-8")
    parts = {
        "warm_train": "0,0\n1,2\n",
        "warm_val": "",
        "warm_test": "",
        "cold_val": "0,1\n",
        "cold_test": "0,3\n",  # users.dat says user 1 read item 3, not user 0
    }
    for part, rows in parts.items():
        (folder / "split" / f"{part}.csv").write_text("user,item\n" + rows, encoding="utf-8")
    with pytest.raises(DataFormatError, match="not the same pairs"):
        load_citeulike(tmp_path)
    (folder / "split" / "cold_test.csv").write_text("user,item\n1,3\n", encoding="utf-8")
    assert load_citeulike(tmp_path).n_interactions == 4
