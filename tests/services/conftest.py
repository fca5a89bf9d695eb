"""Fixtures of the service tests: the API over a real store and index, in process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import install
from services.queues import InProcessQueue
from services.runtime import Runtime
from services.settings import Settings
from tests.factories import bag_of_words, planted_dataset


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """(client, runtime, queue) over a fresh state folder with an installed model."""
    yield from serve(tmp_path_factory.mktemp("state"))


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
