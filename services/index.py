"""The vector index: Qdrant collections of item and user vectors, versioned behind aliases.

Each model version writes its own collections (``<prefix>-items-<version>``,
``<prefix>-users-<version>``); queries go through aliases (``<prefix>-items``...), and one
alias update switches all of them at once, so a query never sees a half-built index nor
item vectors of one version with user vectors of another.

The same client code runs against a Qdrant server (``url``, compose) and qdrant-client's
local mode (``path``, embedded). Local mode allows one client per folder and is not
thread-safe, so every call holds one lock: the API serves requests from a thread pool.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

#: Score of a user for an item is an inner product; items and users are compared so.
DISTANCES = {"items": models.Distance.DOT, "users": models.Distance.DOT}


class VectorIndex:
    """Versioned ``items`` and ``users`` collections in Qdrant (server or local folder)."""

    def __init__(
        self, url: str | None = None, path: Path | None = None, prefix: str = "llmins"
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give a Qdrant server url or a local path, not both")
        self.client = QdrantClient(url=url) if url else QdrantClient(path=str(path))
        self.prefix = prefix
        self._lock = threading.Lock()

    def collection(self, kind: str, version: str) -> str:
        return f"{self.prefix}-{kind}-{version}"

    def alias(self, kind: str) -> str:
        return f"{self.prefix}-{kind}"

    def build(
        self,
        version: str,
        kind: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        payloads: list[dict] | None = None,
        batch: int = 2048,
        progress: bool = False,
    ) -> None:
        """Create ``kind``'s collection of ``version`` and fill it (not yet served)."""
        name = self.collection(kind, version)
        with self._lock:
            if self.client.collection_exists(name):
                self.client.delete_collection(name)
            self.client.create_collection(
                name,
                vectors_config=models.VectorParams(size=vectors.shape[1], distance=DISTANCES[kind]),
            )
        starts = range(0, len(ids), batch)
        for start in tqdm(starts, desc=f"index {kind}", disable=not progress):
            chunk = slice(start, start + batch)
            self._upsert(name, ids[chunk], vectors[chunk], payloads[chunk] if payloads else None)

    def activate(self, version: str, kinds: Sequence[str] = ("items", "users")) -> None:
        """Point every alias at ``version`` in one update; drop all but the previous version."""
        with self._lock:
            previous = self._aliased()
            operations = []
            for kind in kinds:
                alias = self.alias(kind)
                if alias in previous:
                    operations.append(
                        models.DeleteAliasOperation(
                            delete_alias=models.DeleteAlias(alias_name=alias)
                        )
                    )
                operations.append(
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(
                            collection_name=self.collection(kind, version), alias_name=alias
                        )
                    )
                )
            self.client.update_collection_aliases(change_aliases_operations=operations)
            keep = {self.collection(k, version) for k in kinds} | set(previous.values())
            for collection in self.client.get_collections().collections:
                name = collection.name
                if name.startswith(f"{self.prefix}-") and name not in keep:
                    self.client.delete_collection(name)

    def active_version(self, kind: str) -> str | None:
        """The version the ``kind`` alias serves, or None before the first activation."""
        with self._lock:
            collection = self._aliased().get(self.alias(kind))
        return None if collection is None else collection.removeprefix(f"{self.prefix}-{kind}-")

    def upsert(
        self,
        kind: str,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: list[dict] | None = None,
    ) -> None:
        """Write points into the served (aliased) collection, visible on return."""
        self._upsert(self.alias(kind), ids, vectors, payloads)

    def vectors(self, kind: str, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors of ``ids``, in that order.

        Raises:
            KeyError: some ids have no point (they are named).
        """
        with self._lock:
            points = self.client.retrieve(
                self.alias(kind), [int(i) for i in ids], with_vectors=True, with_payload=False
            )
        found = {int(point.id): point.vector for point in points}
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise KeyError(f"no {kind} vectors for ids {missing[:20]}")
        return np.array([found[int(i)] for i in ids], dtype=np.float32)

    def top(
        self,
        kind: str,
        query: np.ndarray,
        k: int,
        exclude: Sequence[int] = (),
        cold: bool | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best (id, score) by inner product, ``exclude`` left out, best first.

        ``cold`` restricts items to those posted (True) or those of the data set (False).
        """
        conditions = {}
        if exclude:
            conditions["must_not"] = [models.HasIdCondition(has_id=[int(i) for i in exclude])]
        if cold is not None:
            conditions["must"] = [
                models.FieldCondition(key="cold", match=models.MatchValue(value=cold))
            ]
        with self._lock:
            hits = self.client.query_points(
                self.alias(kind),
                query=np.asarray(query, dtype=np.float32).tolist(),
                limit=k,
                query_filter=models.Filter(**conditions) if conditions else None,
                with_payload=False,
            ).points
        return [(int(hit.id), float(hit.score)) for hit in hits]

    def count(self, kind: str) -> int:
        with self._lock:
            return self.client.count(self.alias(kind), exact=True).count

    def close(self) -> None:
        with self._lock:
            self.client.close()

    def _upsert(self, collection: str, ids, vectors: np.ndarray, payloads) -> None:
        points = models.Batch(
            ids=[int(i) for i in ids],
            vectors=np.asarray(vectors, dtype=np.float32).tolist(),
            payloads=payloads,
        )
        with self._lock:
            self.client.upsert(collection, points=points, wait=True)

    def _aliased(self) -> dict[str, str]:
        """alias -> collection, for this prefix's aliases."""
        aliases = self.client.get_aliases().aliases
        return {
            a.alias_name: a.collection_name for a in aliases if a.alias_name.startswith(self.prefix)
        }
