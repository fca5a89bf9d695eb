"""Import a catalogue and an interaction log from CSV or JSON Lines files into the store.

Files of any size are read row by row and written in chunks inside one transaction, so
memory stays bounded and a failed import changes nothing: the first bad row stops it with
its file and line, and the transaction is rolled back. Every row is checked by the same
rules as the REST API's bodies (:mod:`services.fields`).

Formats, chosen by the file's suffix:

- ``.csv``: a header row naming the columns. Items: ``id``, ``text``, and optionally
  ``categories`` (labels separated by ``|``) and ``timestamp``. Interactions: ``user_id``,
  ``item_id``, optionally ``timestamp``.
- ``.jsonl`` (or ``.ndjson``): one JSON object per line with the same keys; ``categories``
  is a list of strings.

A timestamp is ISO 8601 (without an offset: UTC) or Unix seconds. Imported items are new
items like posted ones: queued for a warm-up by the active model version. Interactions may
name items of the store or of the items file imported with them; an unknown user id is added.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar

from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from services.fields import InteractionFields, ItemFields
from services.store import CHUNK, Batch, ItemConflict, NewItem, Store, UnknownIds

logger = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: Separates an item's categories in a CSV cell (ids and categories never contain it).
CATEGORY_SEPARATOR = "|"


class ItemRow(ItemFields):
    timestamp: datetime | None = None


class InteractionRow(InteractionFields):
    timestamp: datetime | None = None


Row = TypeVar("Row", bound=BaseModel)


class BadRow(ValueError):
    """A row (or file) the import cannot take: says which file and line, and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path} line {line}: {reason}")


@dataclass
class ImportReport:
    """What an import wrote (``new``) out of what it read (``rows``)."""

    item_rows: int = 0
    new_items: int = 0
    interaction_rows: int = 0
    new_interactions: int = 0
    #: (item id, warm-up job id) of the new items: what a distributed import enqueues.
    queued: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "item_rows": self.item_rows,
            "new_items": self.new_items,
            "interaction_rows": self.interaction_rows,
            "new_interactions": self.new_interactions,
        }


def import_files(
    store: Store,
    items: Path | None = None,
    interactions: Path | None = None,
    progress: bool = True,
) -> ImportReport:
    """Import the items file, then the interactions file, in one transaction.

    Raises:
        BadRow: a missing file, an unknown format, or the first row that breaks a rule
            (then nothing of either file is stored).
    """
    for path in (items, interactions):
        if path is not None:
            _format(path)  # refuse an unknown suffix before reading anything
    report = ImportReport()
    with store.batch() as batch:
        if items is not None:
            for chunk in _chunks(_rows(items, ItemRow, progress)):
                _write_items(batch, items, chunk, report)
        if interactions is not None:
            for chunk in _chunks(_rows(interactions, InteractionRow, progress)):
                _write_interactions(batch, interactions, chunk, report)
    logger.info("import done: %s", report.summary())
    return report


def _write_items(
    batch: Batch, path: Path, chunk: list[tuple[int, ItemRow]], report: ImportReport
) -> None:
    rows = [NewItem(row.id, row.text, row.categories, _utc(row.timestamp)) for _, row in chunk]
    try:
        answers = batch.add_items(rows)
    except ItemConflict as error:
        raise BadRow(path, _conflicting_line(chunk, error.item_id), str(error)) from None
    report.item_rows += len(rows)
    new = [(a.item_id, a.job_id) for a in dict.fromkeys(answers) if a.created]
    report.new_items += len(new)
    report.queued.extend(new)


def _conflicting_line(chunk: list[tuple[int, ItemRow]], item_id: str) -> int:
    """The line the store refused for ``item_id``: its second appearance in the chunk with
    other content, else its first (its content conflicts with the stored item's)."""
    lines = [(line, row) for line, row in chunk if row.id == item_id]
    first = lines[0][1]
    for line, row in lines[1:]:
        if (row.text, set(row.categories)) != (first.text, set(first.categories)):
            return line
    return lines[0][0]


def _write_interactions(
    batch: Batch, path: Path, chunk: list[tuple[int, InteractionRow]], report: ImportReport
) -> None:
    rows = [(row.user_id, row.item_id, _utc(row.timestamp)) for _, row in chunk]
    try:
        report.new_interactions += batch.add_interactions(rows)
    except UnknownIds as error:
        line, unknown = next((n, row.item_id) for n, row in chunk if row.item_id in error.items)
        raise BadRow(
            path, line, f"unknown item id {unknown!r} (neither in the store nor imported)"
        ) from None
    report.interaction_rows += len(rows)


def _utc(moment: datetime | None) -> datetime | None:
    """Aware UTC: a timestamp given without an offset is read as UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _chunks(rows: Iterator[tuple[int, Row]]) -> Iterator[list[tuple[int, Row]]]:
    chunk: list[tuple[int, Row]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    known = ", ".join(CSV_SUFFIXES + JSONL_SUFFIXES)
    raise BadRow(path, 0, f"unknown format {suffix or '(no suffix)'!r}: name it {known}")


def _rows(path: Path, model: type[Row], progress: bool) -> Iterator[tuple[int, Row]]:
    """(line number, checked row) of the file, one at a time."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise BadRow(path, 0, f"cannot be read ({error.strerror})") from None
    with (
        handle,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"import {path.name}",
            disable=not progress,
        ) as bar,
    ):
        lines = _decoded(path, handle, bar)
        records = (
            _csv_records(path, lines, model)
            if _format(path) == "csv"
            else _json_records(path, lines)
        )
        for line, record in records:
            try:
                yield line, model.model_validate(record)
            except ValidationError as error:
                raise BadRow(path, line, _reason(error)) from None


def _decoded(path: Path, handle: BinaryIO, bar: tqdm) -> Iterator[str]:
    for number, raw in enumerate(handle, start=1):
        bar.update(len(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRow(path, number, f"not UTF-8 ({error.reason})") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _csv_records(
    path: Path, lines: Iterator[str], model: type[BaseModel]
) -> Iterator[tuple[int, dict]]:
    reader = csv.reader(lines)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        raise BadRow(path, 1, "the file is empty: a header row is expected") from None
    known = list(model.model_fields)
    required = [name for name, spec in model.model_fields.items() if spec.is_required()]
    unknown = [name for name in header if name not in known]
    missing = [name for name in required if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise BadRow(
            path,
            1,
            f"the header must name the columns {', '.join(known)} (the first "
            f"{len(required)} required, each once); got {', '.join(header) or 'nothing'}",
        )
    try:
        for cells in reader:
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                raise BadRow(path, reader.line_num, f"{len(cells)} cells for {len(header)} columns")
            record: dict = {}
            for name, cell in zip(header, cells, strict=True):
                if name == "categories":
                    record[name] = [c for c in cell.split(CATEGORY_SEPARATOR) if c]
                elif name == "timestamp":
                    record[name] = cell.strip() or None
                else:
                    record[name] = cell
            yield reader.line_num, record
    except csv.Error as error:
        raise BadRow(path, reader.line_num, f"not valid CSV ({error})") from None


def _json_records(path: Path, lines: Iterator[str]) -> Iterator[tuple[int, dict]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadRow(path, number, f"not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise BadRow(path, number, "a JSON object is expected on each line")
        yield number, record


def _reason(error: ValidationError) -> str:
    """Pydantic's errors in one line: ``field: message; ...``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'row'}: {problem['msg']}"
        for problem in error.errors()
    )
