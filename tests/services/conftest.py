"""Fixtures of the service tests: the API over a real store and index, in process; empty
stores on SQLite and on the real PostgreSQL.

PostgreSQL is ``LLMINS_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets a schema of its own,
dropped afterwards, and a session time zone other than UTC, so the store must normalise
times itself. When the server cannot be reached the PostgreSQL cases FAIL: a skipped
store test would read as a pass in CI. Set ``LLMINS_TEST_POSTGRES_URL=""`` to skip them
on purpose (a machine without PostgreSQL); the skip then shows in pytest's summary.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.api.app import create_app
from services.bootstrap import bootstrap, install
from services.queues import InProcessQueue
from services.runtime import Runtime
from services.settings import NO_DATASET, Settings
from services.store import Store
from tests.factories import bag_of_words, planted_dataset

POSTGRES_URL = os.environ.get(
    "LLMINS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: Not UTC, and not a whole number of hours: a time read back unconverted shows at once.
SESSION_TIME_ZONE = "Asia/Kolkata"


def create_schema(admin: Store, schema: str) -> str | None:
    """None once ``schema`` exists, else why the server could not be reached."""
    try:
        with admin.engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except sqlalchemy.exc.OperationalError as error:
        return str(error.orig)
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema (dropped afterwards).

    The PostgreSQL URL is given in its plain ``postgresql://`` form, so every test also
    checks that the store picks psycopg 3 for it.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip("LLMINS_TEST_POSTGRES_URL is empty: PostgreSQL tests turned off")
    admin = Store(POSTGRES_URL)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    problem = create_schema(admin, schema)
    if problem is not None:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {make_url(POSTGRES_URL)!r} is unreachable ({problem}); start it "
            'or set LLMINS_TEST_POSTGRES_URL="" to run the store tests on SQLite only',
            pytrace=False,
        )
    options = f"-csearch_path={schema} -cTimeZone={SESSION_TIME_ZONE}"
    plain = make_url(POSTGRES_URL).set(drivername="postgresql")
    yield plain.update_query_dict({"options": options}).render_as_string(hide_password=False)
    with admin.engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def store(url) -> Iterator[Store]:
    store = Store(url)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """(client, runtime, queue) over a fresh state folder with an installed model."""
    yield from serve(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def empty_service(tmp_path_factory):
    """(client, runtime, queue) of a service started with no data set: no model version."""
    settings = Settings(state_dir=tmp_path_factory.mktemp("empty"), dataset=NO_DATASET)
    runtime = Runtime(settings, embedder=bag_of_words)
    assert bootstrap(runtime) is None
    queue = InProcessQueue(runtime)
    with TestClient(create_app(runtime, queue)) as client:
        yield client, runtime, queue
    queue.close()
    runtime.close()


def serve(state):
    """The API over a no-LM version of the planted data in ``state``: yields (client,
    runtime, queue) and closes them after."""
    runtime = Runtime(Settings(state_dir=state), embedder=bag_of_words)
    data = planted_dataset()
    install(runtime, data, bag_of_words(data.item_texts), max_epochs=20, progress=False)
    queue = InProcessQueue(runtime)
    with TestClient(create_app(runtime, queue)) as client:
        yield client, runtime, queue
    queue.close()
    runtime.close()


def api_routes_of(routes) -> Iterator[APIRoute]:
    """Every API route, inside included routers too (FastAPI keeps an included router as
    one entry that holds the router; the routers add no prefix of their own here)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes_of(route.original_router.routes)
