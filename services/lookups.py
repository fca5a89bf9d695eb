"""The recommendation path's remembered look-ups: each user's seen items, for a while.

Kept apart from the store's tables and queries (:mod:`services.store`): what is cached,
for how long, and why a read that raced a write is never kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping

from cachetools import TTLCache

Seen = tuple[int, ...]


class SeenItemsCache:
    """Each user's seen item rows, remembered for ``ttl_s`` (0: never remembered).

    This process's writes call :meth:`forget` after they commit, which also counts a
    *write generation*: a database read that started before a write may miss it, so its
    answer is kept only if no write happened meanwhile. A write through another process
    (another API replica) is seen when the entry expires.
    """

    def __init__(
        self, ttl_s: float, maxsize: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=clock) if ttl_s > 0 else None
        self._lock = threading.Lock()
        self._writes = 0

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def get(self, user_id: str, read: Callable[[str], Seen]) -> Seen:
        """The remembered rows, or ``read(user_id)`` (kept unless a write raced it)."""
        if self._entries is None:
            return read(user_id)
        with self._lock:
            cached = self._entries.get(user_id)
            writes = self._writes
        if cached is not None:
            return cached
        seen = read(user_id)
        with self._lock:
            if writes == self._writes:
                self._entries[user_id] = seen
        return seen

    def generation(self) -> int:
        """The write count now: pass it to :meth:`fill` with what is read after it."""
        with self._lock:
            return self._writes

    def fill(self, generation: int, users: Iterable[str], seen: Mapping[str, Seen]) -> None:
        """Remember every user's rows (none: empty), unless a write came after ``generation``."""
        if self._entries is None:
            return
        with self._lock:
            if generation == self._writes:
                for user_id in users:
                    self._entries[user_id] = tuple(seen.get(user_id, ()))

    def forget(self, users: Iterable[str] | None = None) -> None:
        """Drop the rows of ``users`` (None: of everyone) after a write."""
        if self._entries is None:
            return
        with self._lock:
            self._writes += 1
            if users is None:
                self._entries.clear()
            else:
                for user in users:
                    self._entries.pop(user, None)
