"""MovieLens 100K and 1M read from small files in the exact GroupLens formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.data import load_dataset
from models.data.dataset import SPLIT_NAMES, ColdStartDataset
from models.data.errors import DataFormatError
from models.data.movielens import (
    ML100K_GENRES,
    load_ml1m,
    load_ml100k,
    read_ml1m,
    read_ml100k,
)
from models.data.split import RawInteractions

N_USERS, N_MOVIES = 30, 40

#: Writes fake files under a data folder; returns (movies by source id, ratings).
Writer = Callable[[Path], tuple[dict, list]]
Reader = Callable[[Path], RawInteractions]

#: Hand-written movies; the others are "Movie <id> (2000)" with random genres.
SPECIAL_MOVIES = {
    1: ("Toy Story (1995)", ["Animation", "Children's", "Comedy"]),
    2: ("Café au lait (1993)", ["Comedy"]),
    3: ("Untitled (1990)", []),
}


def fake_movies(sparse: bool) -> dict[int, tuple[str, list[str]]]:
    """``N_MOVIES`` movies by source id; ml-1m style sparse ids (up to 120) when ``sparse``."""
    rng = np.random.default_rng(0)
    ids = range(1, N_MOVIES + 1)
    if sparse:
        others = rng.choice(np.arange(4, 121), N_MOVIES - len(SPECIAL_MOVIES), replace=False)
        ids = [*SPECIAL_MOVIES, *others.tolist()]
    movies = {}
    for movie in ids:
        genres = rng.choice(ML100K_GENRES[1:], size=2, replace=False).tolist()
        movies[movie] = SPECIAL_MOVIES.get(movie, (f"Movie {movie} (2000)", sorted(genres)))
    return movies


def fake_ratings(movie_ids: list[int]) -> list[tuple[int, int, int]]:
    """(user, movie, rating) with 1-based user ids and user 7 absent (a gap in the ids)."""
    rng = np.random.default_rng(1)
    users = [user for user in range(1, N_USERS + 2) if user != 7]
    return [
        (user, movie, int(rng.integers(1, 6)))
        for user in users
        for movie in movie_ids
        if rng.random() < 0.3
    ]


def write_ml1m(data_dir: Path) -> tuple[dict, list]:
    """Write ``ml-1m/movies.dat`` and ``ratings.dat`` (movies in file order unsorted)."""
    movies, folder = fake_movies(sparse=True), data_dir / "ml-1m"
    folder.mkdir(parents=True)
    lines = [f"{movie}::{title}::{'|'.join(genres)}" for movie, (title, genres) in movies.items()]
    (folder / "movies.dat").write_text("\n".join(reversed(lines)) + "\n", encoding="latin-1")
    ratings = fake_ratings(list(movies))
    text = "".join(f"{u}::{m}::{r}::97830{u:04d}\n" for u, m, r in ratings)
    (folder / "ratings.dat").write_text(text, encoding="latin-1")
    return movies, ratings


def write_ml100k(data_dir: Path) -> tuple[dict, list]:
    """Write ``ml-100k/u.item`` and ``u.data``; movie 3 has only the "unknown" genre flag."""
    movies, folder = fake_movies(sparse=False), data_dir / "ml-100k"
    folder.mkdir(parents=True)
    lines = []
    for movie, (title, genres) in movies.items():
        flags = [
            int(name in genres or (movie == 3 and name == "unknown")) for name in ML100K_GENRES
        ]
        url = f"http://us.imdb.com/M/title-exact?{movie}"
        lines.append("|".join([str(movie), title, "01-Jan-1995", "", url, *map(str, flags)]))
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    ratings = fake_ratings(list(movies))
    text = "".join(f"{u}\t{m}\t{r}\t88125{u:04d}\n" for u, m, r in ratings)
    (folder / "u.data").write_text(text, encoding="latin-1")
    return movies, ratings


@pytest.fixture()
def ml1m_dir(tmp_path: Path) -> Path:
    write_ml1m(tmp_path)
    return tmp_path


@pytest.fixture()
def ml100k_dir(tmp_path: Path) -> Path:
    write_ml100k(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("write", "read"), [(write_ml1m, read_ml1m), (write_ml100k, read_ml100k)])
def test_every_rating_is_an_interaction_with_dense_sorted_ids(
    tmp_path: Path, write: Writer, read: Reader
) -> None:
    movies, ratings = write(tmp_path)
    raw = read(tmp_path)
    movie_ids, user_ids = sorted(movies), sorted({user for user, _, _ in ratings})
    assert raw.item_ids == tuple(movie_ids)
    assert raw.user_ids == tuple(user_ids)
    assert raw.n_users == N_USERS  # 31 source ids minus the gap at 7
    expected = [(user_ids.index(u), movie_ids.index(m)) for u, m, _ in ratings]
    np.testing.assert_array_equal(raw.pairs, np.array(expected))
    assert raw.item_kind == "movie"


def test_ml1m_texts_are_title_and_genres_in_sorted_id_order(ml1m_dir: Path) -> None:
    raw = read_ml1m(ml1m_dir)
    assert len(raw.item_texts) == N_MOVIES
    assert raw.item_texts[:3] == (
        "Toy Story (1995). Genres: Animation, Children's, Comedy",
        "Café au lait (1993). Genres: Comedy",
        "Untitled (1990)",
    )
    assert max(raw.item_ids) > N_MOVIES  # sparse ids, yet dense items 0..N_MOVIES-1
    assert raw.pairs[:, 1].max() < N_MOVIES


def test_ml100k_texts_read_latin1_and_skip_the_unknown_genre(ml100k_dir: Path) -> None:
    raw = read_ml100k(ml100k_dir)
    assert raw.item_texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert raw.item_texts[1] == "Café au lait (1993). Genres: Comedy"
    assert raw.item_texts[2] == "Untitled (1990)"
    assert raw.item_ids == tuple(range(1, N_MOVIES + 1))


@pytest.mark.parametrize(
    ("name", "write", "load"),
    [("ml-1m", write_ml1m, load_ml1m), ("ml-100k", write_ml100k, load_ml100k)],
)
def test_loaders_split_all_ratings_by_seed(
    tmp_path: Path, name: str, write: Writer, load: Callable[..., ColdStartDataset]
) -> None:
    _, ratings = write(tmp_path)
    dataset = load(tmp_path, seed=3)
    assert (dataset.name, dataset.item_kind) == (name, "movie")
    assert (dataset.n_users, dataset.n_items) == (N_USERS, N_MOVIES)
    assert dataset.n_interactions == len(ratings)  # no duplicate ratings in the fake data
    assert len(dataset.cold_val_items) + len(dataset.cold_test_items) == 8  # 20% of 40
    assert dataset.fingerprint == load_dataset(name, tmp_path, seed=3).fingerprint
    assert dataset.fingerprint != load(tmp_path, seed=4).fingerprint
    assert all(len(dataset.splits[part]) for part in SPLIT_NAMES)


def append_line(path: Path, text: str) -> int:
    """Append ``text`` as the last line of ``path``; return its 1-based line number."""
    lines = path.read_text(encoding="latin-1").splitlines()
    path.write_text("\n".join([*lines, text]) + "\n", encoding="latin-1")
    return len(lines) + 1


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("ratings.dat", "1::1::5", "3 fields"),
        ("ratings.dat", "1::x::5::978300760", "movie id is not an integer: 'x'"),
        ("ratings.dat", "1::1::4.5::978300760", "rating is not an integer"),
        ("ratings.dat", "1::9999::5::978300760", "movie id 9999 is not in movies.dat"),
        ("ratings.dat", "0::1::5::978300760", "user id 0 < 1"),
        ("movies.dat", "500::Extra (2000)", "2 fields"),
        ("movies.dat", "abc::Extra (2000)::Drama", "movie id is not an integer"),
        ("movies.dat", "1::Toy Story again (1995)::Comedy", "movie id 1 already on line"),
    ],
)
def test_ml1m_errors_name_file_and_line(ml1m_dir: Path, file: str, line: str, message: str) -> None:
    path = ml1m_dir / "ml-1m" / file
    number = append_line(path, line)
    with pytest.raises(DataFormatError, match=message) as error:
        read_ml1m(ml1m_dir)
    assert error.value.path == path
    assert error.value.line == number
    assert f"{file}:{number}:" in str(error.value)


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("u.data", "1\t2\t3", "3 fields"),
        ("u.data", "1\t41\t3\t881250949", "movie id 41 is not in u.item"),
        ("u.data", "one\t2\t3\t881250949", "user id is not an integer"),
        ("u.item", "41|Short (1995)|01-Jan-1995||url|0|1", "7 fields"),
        ("u.item", "41|Bad flag (1995)|01-Jan-1995||url" + "|2" * 19, "expected 0 or 1"),
        ("u.item", "41|Bad flag (1995)|01-Jan-1995||url|x" + "|0" * 18, "genre flag 'unknown'"),
    ],
)
def test_ml100k_errors_name_file_and_line(
    ml100k_dir: Path, file: str, line: str, message: str
) -> None:
    path = ml100k_dir / "ml-100k" / file
    number = append_line(path, line)
    with pytest.raises(DataFormatError, match=message) as error:
        read_ml100k(ml100k_dir)
    assert (error.value.path, error.value.line) == (path, number)
    assert f"{file}:{number}:" in str(error.value)


@pytest.mark.parametrize(
    ("folder", "file", "write", "read"),
    [
        ("ml-1m", "ratings.dat", write_ml1m, read_ml1m),
        ("ml-1m", "movies.dat", write_ml1m, read_ml1m),
        ("ml-100k", "u.data", write_ml100k, read_ml100k),
        ("ml-100k", "u.item", write_ml100k, read_ml100k),
    ],
)
def test_missing_file_is_named(
    tmp_path: Path, folder: str, file: str, write: Writer, read: Reader
) -> None:
    write(tmp_path)
    (tmp_path / folder / file).unlink()
    with pytest.raises(DataFormatError, match="file not found") as error:
        read(tmp_path)
    assert error.value.path == tmp_path / folder / file
