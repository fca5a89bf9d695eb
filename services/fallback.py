"""Recommendations for a user the service has no model for: popular, then newest.

Used until a model version exists (a service started empty), and for users no vector can be
built for yet (no interaction with an item that has a vector). The ranking is the same for
everyone: the items with the most real interactions over the recent window, then the newest
items; each user's own items are left out. It is read from the store at most once per
``ttl_s`` per process (an aggregate over the window's interactions), then filtered per
request.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from services.store import Store

#: How many popular and newest items the shared ranking holds; a request filters them
#: (its pool, category and seen items), so it may return fewer than ``k`` where those
#: leave out more.
DEPTH = 1000


class PopularFallback:
    """The shared fallback ranking of one process, remembered for ``ttl_s`` seconds."""

    def __init__(self, store: Store, window_s: float, ttl_s: float = 10.0) -> None:
        self.store = store
        self.window_s = window_s
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._ranking: tuple[float, list[tuple[str, float]]] | None = None

    def top(
        self,
        user_id: str,
        k: int,
        origin: str | None = None,
        category: str | None = None,
    ) -> list[tuple[str, float]]:
        """The best ``k`` (item id, score) for ``user_id``: score is the item's real
        interactions in the window (0 for the newest items that fill up the list);
        ``origin`` and ``category`` restrict the items as the pools and ``?category=`` do."""
        ranking = self._shared()
        seen = self.store.seen_item_ids(user_id)
        candidates = [(item, score) for item, score in ranking if item not in seen]
        if origin is not None or category is not None:
            facets = self.store.item_facets([item for item, _ in candidates])
            candidates = [
                (item, score)
                for item, score in candidates
                if item in facets
                and (origin is None or facets[item][0] == origin)
                and (category is None or category in facets[item][1])
            ]
        return candidates[:k]

    def _shared(self) -> list[tuple[str, float]]:
        with self._lock:
            if self._ranking is not None and time.monotonic() - self._ranking[0] < self.ttl_s:
                return self._ranking[1]
        since = datetime.now(UTC) - timedelta(seconds=self.window_s)
        popular = [(item, float(n)) for item, n in self.store.popular_items(since, DEPTH)]
        listed = {item for item, _ in popular}
        newest = [(item, 0.0) for item in self.store.latest_items(DEPTH) if item not in listed]
        ranking = (popular + newest)[:DEPTH]
        with self._lock:
            self._ranking = (time.monotonic(), ranking)
        return ranking
