"""Importing items and interactions from CSV and JSON Lines files: on SQLite and PostgreSQL
(the ``store`` fixture), all or nothing, with the line of the first bad row."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

import services.imports
from services.imports import BadRow, import_files
from services.store import Store
from services.tables import Interaction, Item, Job, User

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def counts(store: Store) -> tuple[int, int, int, int]:
    """(items, jobs, users, interactions) in the store."""
    with store.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (Item, Job, User, Interaction)
        )


def test_a_csv_import_stores_items_and_interactions_as_the_api_would(store, tmp_path) -> None:
    store.load_users([("u0", 0)])
    store.load_items([("i0", "a data-set paper", 0, "warm")])
    items = write(
        tmp_path / "items.csv",
        "id,text,categories,timestamp\n"
        'a1,"A title, with a comma",physics|ml,2020-01-02T03:04:05\n'
        'a2,"two\nlines",,1600000000\n'
        "a3,no categories nor time,,\n",
    )
    interactions = write(
        tmp_path / "interactions.csv",
        "user_id,item_id,timestamp\n"
        "u0,a1,2021-01-01T00:00:00+02:00\n"
        "new-user,a2,\n"
        "new-user,i0,\n"
        "new-user,i0,\n",
    )
    report = import_files(store, items, interactions, progress=False)

    assert report.summary() == {
        "item_rows": 3,
        "new_items": 3,
        "interaction_rows": 4,
        "new_interactions": 3,
    }
    assert sorted(item for item, _ in report.queued) == ["a1", "a2", "a3"]
    a1 = store.get_item("a1")
    assert (a1.text, a1.categories, a1.status, a1.origin) == (
        "A title, with a comma",
        ["ml", "physics"],
        "queued",
        "api",
    )
    assert a1.published_at == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert store.get_item("a2").text == "two\nlines"
    assert store.get_item("a2").published_at == datetime.fromtimestamp(1600000000, UTC)
    assert store.get_item("a3").published_at is None
    for item_id, job_id in report.queued:  # each new item has its queued warm-up
        assert store.get_job(job_id).item_id == item_id
        assert store.get_job(job_id).status == "queued"
    assert store.user_summary("new-user") == (None, 2)
    with store.session() as session:
        when = session.scalar(
            select(Interaction.occurred_at).where(
                Interaction.user_id == "u0", Interaction.item_id == "a1"
            )
        )
    assert when == datetime(2020, 12, 31, 22, tzinfo=UTC)


def test_a_jsonl_import_reads_the_same_rows(store, tmp_path) -> None:
    items = jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": "b1", "text": "first", "categories": ["x"], "timestamp": 1700000000},
            {"id": "b2", "text": "second"},
        ],
    )
    interactions = tmp_path / "interactions.ndjson"
    write(
        interactions, '{"user_id": "u9", "item_id": "b1"}\n\n{"user_id": "u9", "item_id": "b2"}\n'
    )
    report = import_files(store, items, interactions, progress=False)
    assert (report.new_items, report.new_interactions) == (2, 2)
    assert store.get_item("b1").categories == ["x"]
    assert store.user_summary("u9") == (None, 2)


def test_importing_the_same_files_again_adds_nothing(store, tmp_path) -> None:
    items = write(tmp_path / "items.csv", "id,text\nc1,one\nc2,two\n")
    interactions = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,c1\nu1,c2\n")
    first = import_files(store, items, interactions, progress=False)
    before = counts(store)
    again = import_files(store, items, interactions, progress=False)
    assert counts(store) == before
    assert (again.item_rows, again.new_items, again.queued) == (2, 0, [])
    assert (again.interaction_rows, again.new_interactions) == (2, 0)
    assert store.latest_job("c1").id == dict(first.queued)["c1"]


@pytest.mark.parametrize(
    ("items", "interactions", "line", "reason"),
    [
        ("id,text\nd1,fine\nd2,\n", None, 3, "text: String should have at least 1 character"),
        ("id,text\nd1,fine\nd/2,slash\n", None, 3, "id: String should match pattern"),
        ("id,text\nd1,fine\nd1,other text\n", None, 3, "'d1' is given twice"),
        ("id,text\nd1,fine\ni0,not the stored text\n", None, 3, "exists with different"),
        ("id,title\nd1,fine\n", None, 1, "the header must name the columns id, text"),
        ("id,text\nd1,fine,extra\n", None, 2, "3 cells for 2 columns"),
        ("", None, 1, "the file is empty"),
        ("id,text,timestamp\nd1,fine,yesterday\n", None, 2, "timestamp: Input should be"),
        ("id,text\nd1,fine\n", "user_id,item_id\nu1,d1\nu1,nowhere\n", 3, "'nowhere'"),
        ("id,text\nd1,fine\n", "user_id,item_id\nu 1,d1\n", 2, "user_id: String should match"),
    ],
)
def test_a_bad_row_stops_the_import_with_its_line_and_stores_nothing(
    store, tmp_path, items, interactions, line, reason
) -> None:
    store.load_items([("i0", "a data-set paper", 0, "warm")])
    before = counts(store)
    items_path = write(tmp_path / "items.csv", items)
    interactions_path = interactions and write(tmp_path / "interactions.csv", interactions)
    with pytest.raises(BadRow) as raised:
        import_files(store, items_path, interactions_path, progress=False)
    assert raised.value.line == line
    assert reason in raised.value.reason
    assert counts(store) == before  # the good rows before it are gone too


def test_a_bad_json_line_and_bad_bytes_are_refused_with_their_line(store, tmp_path) -> None:
    bad_json = write(tmp_path / "items.jsonl", '{"id": "e1", "text": "ok"}\n{"id": "e2",\n')
    with pytest.raises(BadRow, match=r"line 2: not valid JSON"):
        import_files(store, bad_json, progress=False)
    not_object = write(tmp_path / "more.jsonl", '["e1", "ok"]\n')
    with pytest.raises(BadRow, match=r"line 1: a JSON object is expected"):
        import_files(store, not_object, progress=False)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("id,text\ne1,ok\ne2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(BadRow, match=r"line 3: not UTF-8"):
        import_files(store, latin1, progress=False)
    with pytest.raises(BadRow, match="unknown format '.txt'"):
        import_files(store, write(tmp_path / "items.txt", "id,text\n"), progress=False)
    with pytest.raises(BadRow, match="cannot be read"):
        import_files(store, tmp_path / "missing.csv", progress=False)
    assert counts(store) == (0, 0, 0, 0)


def test_a_file_larger_than_a_chunk_is_written_chunk_by_chunk_in_one_transaction(
    store, tmp_path, monkeypatch
) -> None:
    """Chunks of 3 rows: repeats across chunks are found, and a bad row in the last chunk
    takes back the chunks written before it."""
    monkeypatch.setattr(services.imports, "CHUNK", 3)
    rows = "".join(f"f{n},text {n}\n" for n in range(10))
    items = write(tmp_path / "items.csv", "id,text\n" + rows + "f0,text 0\n")
    interactions = write(
        tmp_path / "interactions.csv",
        "user_id,item_id\n" + "".join(f"u{n % 4},f{n}\n" for n in range(10)),
    )
    report = import_files(store, items, interactions, progress=False)
    assert (report.item_rows, report.new_items, report.new_interactions) == (11, 10, 10)
    assert counts(store) == (10, 10, 4, 10)

    more = write(
        tmp_path / "more.csv", "id,text\n" + "".join(f"g{n},g\n" for n in range(8)) + "g9,\n"
    )
    with pytest.raises(BadRow, match="line 10"):
        import_files(store, more, progress=False)
    assert counts(store) == (10, 10, 4, 10)


def run_import(state: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "services.worker", "import", "--no-progress", *arguments],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LLMINS_STATE_DIR": str(state), "LLMINS_MODE": "embedded"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_command_prints_what_it_wrote_and_exits_2_on_a_bad_row(tmp_path) -> None:
    state = tmp_path / "state"
    items = write(tmp_path / "items.csv", "id,text\nh1,one\nh2,two\n")
    interactions = write(tmp_path / "interactions.csv", "user_id,item_id\nu1,h1\nu1,gone\n")

    done = run_import(state, "--items", str(items))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new_items"] == 2
    assert "2 new items are queued: no model version is active yet" in done.stderr

    failed = run_import(state, "--interactions", str(interactions))
    assert failed.returncode == 2
    assert f"error: {interactions} line 3: unknown item id 'gone'" in failed.stderr
    assert "Traceback" not in failed.stderr

    empty = run_import(state)
    assert empty.returncode != 0
    assert "give --items, --interactions or both" in empty.stderr
