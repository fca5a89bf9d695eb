"""MovieLens 100K and 1M (GroupLens) in their published file formats, split by the paper's rule.

MovieLens ships no cold-start split, so every rating becomes an implicit interaction (the
paper keeps all 1,000,210 of ml-1m) and :func:`~models.data.split.split_cold_start` makes
the split from a seed.

* ``<data_dir>/ml-100k/u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``;
  ``u.item``: ``id|title|release date|video release date|IMDb URL|19 genre flags``.
* ``<data_dir>/ml-1m/ratings.dat``: ``UserID::MovieID::Rating::Timestamp``;
  ``movies.dat``: ``MovieID::Title::Genres`` (genres joined by ``|``).

The files are latin-1 (titles such as "Café"). Source ids are 1-based and ml-1m movie ids
are sparse, so users and movies are mapped to dense 0-based ids in sorted order of their
source id; :func:`read_ml100k`/:func:`read_ml1m` return that mapping with the interactions.
The text of a movie is its title (which already ends with the year) and its genres:
"Toy Story (1995). Genres: Animation, Children's, Comedy".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data.dataset import ColdStartDataset, as_pairs
from models.data.errors import DataFormatError, parse_int, require_file
from models.data.split import RawInteractions

#: Genre flag columns of ``u.item``, in file order.
ML100K_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: Fields of a ratings line, in file order.
RATING_FIELDS: tuple[str, ...] = ("user id", "movie id", "rating", "timestamp")

#: Parses one line of a movies file (already split into fields) into (id, title, genres).
MovieParser = Callable[[list[str], Path, int], tuple[int, str, list[str]]]


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every non-blank line of a latin-1 file.

    Iterating the file (not ``str.splitlines``) splits on newlines only: latin-1 text may hold
    characters such as ``\\x85`` that ``splitlines`` would treat as line breaks.
    """
    with require_file(path).open(encoding="latin-1") as handle:
        for line, text in enumerate(handle, start=1):
            text = text.rstrip("\n")
            if text.strip():
                yield line, text


def movie_text(title: str, genres: list[str]) -> str:
    """The content an LM sees for a movie: its title (with year) and its genres."""
    return f"{title}. Genres: {', '.join(genres)}" if genres else title


def read_movies(path: Path, sep: str, n_fields: int, parse: MovieParser) -> dict[int, str]:
    """Text of every movie of a movies file, keyed by source id; duplicate ids are errors."""
    texts: dict[int, str] = {}
    first_line: dict[int, int] = {}
    for line, text in numbered_lines(path):
        fields = text.split(sep)
        if len(fields) != n_fields:
            message = f"{len(fields)} fields separated by {sep!r}, expected {n_fields}"
            raise DataFormatError(path, message, line)
        movie, title, genres = parse(fields, path, line)
        if movie < 1:
            raise DataFormatError(path, f"movie id {movie} < 1 (GroupLens ids start at 1)", line)
        if movie in texts:
            raise DataFormatError(
                path, f"movie id {movie} already on line {first_line[movie]}", line
            )
        texts[movie] = movie_text(title.strip(), genres)
        first_line[movie] = line
    return texts


def parse_u_item(fields: list[str], path: Path, line: int) -> tuple[int, str, list[str]]:
    """One ``u.item`` line. The "unknown" genre flag adds no content, so it is left out."""
    genres = []
    for name, token in zip(ML100K_GENRES, fields[5:], strict=True):
        flag = parse_int(token, path, line, f"genre flag {name!r}")
        if flag not in (0, 1):
            raise DataFormatError(path, f"genre flag {name!r} is {flag}, expected 0 or 1", line)
        if flag and name != "unknown":
            genres.append(name)
    return parse_int(fields[0], path, line, "movie id"), fields[1], genres


def parse_movies_dat(fields: list[str], path: Path, line: int) -> tuple[int, str, list[str]]:
    """One ``movies.dat`` line."""
    genres = [genre for genre in fields[2].split("|") if genre.strip()]
    return parse_int(fields[0], path, line, "movie id"), fields[1], genres


def read_ratings(
    path: Path, sep: str, movie_index: dict[int, int], movies_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Source user ids and dense movie ids of every rating, each rating one interaction.

    The rating must be an integer (a non-integer one means a garbled line) but its value is
    unused; the timestamp is not parsed at all, which keeps ml-1m's 1M lines fast.
    """
    users: list[int] = []
    items: list[int] = []
    for line, text in numbered_lines(path):
        fields = text.split(sep)
        if len(fields) != len(RATING_FIELDS):
            expected = f"expected {len(RATING_FIELDS)} ({', '.join(RATING_FIELDS)})"
            raise DataFormatError(
                path, f"{len(fields)} fields separated by {sep!r}, {expected}", line
            )
        user = parse_int(fields[0], path, line, "user id")
        if user < 1:
            raise DataFormatError(path, f"user id {user} < 1 (GroupLens ids start at 1)", line)
        movie = parse_int(fields[1], path, line, "movie id")
        parse_int(fields[2], path, line, "rating")
        item = movie_index.get(movie)
        if item is None:
            raise DataFormatError(path, f"movie id {movie} is not in {movies_path.name}", line)
        users.append(user)
        items.append(item)
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)


@dataclass(frozen=True)
class GroupLensFormat:
    """Where and how one MovieLens release stores its ratings and movies."""

    name: str
    ratings: str
    rating_sep: str
    movies: str
    movie_sep: str
    movie_fields: int
    parse_movie: MovieParser


ML100K = GroupLensFormat(
    "ml-100k", "u.data", "\t", "u.item", "|", 5 + len(ML100K_GENRES), parse_u_item
)
ML1M = GroupLensFormat("ml-1m", "ratings.dat", "::", "movies.dat", "::", 3, parse_movies_dat)


def read_grouplens(data_dir: str | Path, fmt: GroupLensFormat) -> RawInteractions:
    """Read ``<data_dir>/<fmt.name>/`` and map users and movies to dense ids in sorted order."""
    folder = Path(data_dir) / fmt.name
    movies_path = folder / fmt.movies
    texts = read_movies(movies_path, fmt.movie_sep, fmt.movie_fields, fmt.parse_movie)
    movie_ids = sorted(texts)
    movie_index = {movie: item for item, movie in enumerate(movie_ids)}
    ratings_path = folder / fmt.ratings
    source_users, items = read_ratings(ratings_path, fmt.rating_sep, movie_index, movies_path)
    user_ids, users = np.unique(source_users, return_inverse=True)
    return RawInteractions(
        name=fmt.name,
        item_kind="movie",
        item_texts=tuple(texts[movie] for movie in movie_ids),
        pairs=as_pairs(np.stack([users, items], axis=1)),
        user_ids=tuple(user_ids.tolist()),
        item_ids=tuple(movie_ids),
    )


def read_ml100k(data_dir: str | Path) -> RawInteractions:
    """All ratings and movies of ``<data_dir>/ml-100k/`` with their source ids, unsplit."""
    return read_grouplens(data_dir, ML100K)


def read_ml1m(data_dir: str | Path) -> RawInteractions:
    """All ratings and movies of ``<data_dir>/ml-1m/`` with their source ids, unsplit."""
    return read_grouplens(data_dir, ML1M)


def load_ml100k(data_dir: str | Path, seed: int = 0) -> ColdStartDataset:
    """MovieLens 100K with the paper's cold-start split drawn from ``seed``."""
    return read_ml100k(data_dir).split(seed)


def load_ml1m(data_dir: str | Path, seed: int = 0) -> ColdStartDataset:
    """MovieLens 1M with the paper's cold-start split drawn from ``seed``."""
    return read_ml1m(data_dir).split(seed)
