"""Errors raised while reading data, always naming the file and the line."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A data file is missing or malformed; the message names the file and line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise :class:`DataFormatError` when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    return path


def parse_int(token: str, path: Path, line: int, what: str) -> int:
    """Parse one integer field, raising an error that names file, line and field."""
    try:
        return int(token)
    except ValueError:
        raise DataFormatError(path, f"{what} is not an integer: {token!r}", line) from None


def check_id(value: int, limit: int | None, path: Path, line: int, what: str) -> int:
    """Check ``0 <= value < limit`` (``value >= 0`` when no limit is known) for an id."""
    if value < 0:
        raise DataFormatError(path, f"{what} {value} is negative", line)
    if limit is not None and value >= limit:
        raise DataFormatError(path, f"{what} {value} out of range [0, {limit})", line)
    return value
