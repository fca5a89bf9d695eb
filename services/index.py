"""The vector index: Qdrant collections of item, user and content vectors behind aliases.

Each model version writes its own collections (``<prefix>-<kind>-<version>``); queries and
online upserts go through one alias per kind (``<prefix>-<kind>``), and one alias update
switches all of them at once, so a query never sees a half-built index nor item vectors of
one version with user vectors of another. The collection served before a switch is kept
for rollback; older ones are dropped.

The same client code runs against a Qdrant server (``url``, compose) and qdrant-client's
local mode (``path``, embedded). Local mode allows one client per folder and is not
thread-safe, so every client call holds one lock: the API serves requests from a thread pool.

In local mode, every write goes through this object (one process owns the folder), so it
keeps an exact in-memory copy of each served collection (:class:`services.ranking.Mirror`)
and answers ``top`` and ``vectors`` from it; the copies have a lock of their own, so a query
never waits for a write to reach the disk. A server answers every query itself.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models
from tqdm.auto import tqdm

from services.ranking import Mirror, TopQuery

#: How each kind is compared. A user's score for an item is an inner product, so items and
#: users are dot-product collections; content vectors are compared by angle. A version's
#: ``content`` points are the items in its users' histories, each with the payload
#: ``{"users": [rows]}`` (who has it in their history; see :meth:`VectorIndex.shortlists`).
DISTANCES = {
    "items": models.Distance.DOT,
    "users": models.Distance.DOT,
    "content": models.Distance.COSINE,
}

#: Users as the filter of new items sees them: named vectors, compared per signal (see
#: :meth:`VectorIndex.build_profiles`). Never copied in memory: candidates are Qdrant's.
PROFILES = "profiles"
#: A profile's payload: the item rows of the user's history (their content vectors are the
#: ``content`` collection's).
ITEMS = "items"
#: A ``content`` point's payload: the user rows that have the item in their history.
USERS = "users"
#: The profile's backbone user vector (what the update fits a new item to).
BACKBONE = "backbone"
KINDS = (*DISTANCES, PROFILES)

#: A build shows a progress bar only beyond this many batches (short builds stay quiet).
QUIET_BATCHES = 4


@dataclass(frozen=True)
class PointQuery:
    """The ``k`` best points of one kind for the stored vector of ``point``, a point of
    another kind (a user's items), ``exclude`` left out, restricted to a pool by ``cold``.

    The point is the key its ranking is remembered under in memory (:class:`TopQuery`).
    """

    point: int
    k: int
    exclude: Sequence[int] = ()
    cold: bool | None = None
    category: str | None = None


class VectorIndex:
    """Versioned ``items``, ``users`` and ``content`` collections in Qdrant.

    Point ids are the row indices of the model version (non-negative ints); ``items``
    points carry the payload ``{"cold": bool}`` (True: posted through the API).
    ``in_memory`` (local mode only) answers queries from exact in-memory copies.
    """

    def __init__(
        self,
        url: str | None = None,
        path: Path | None = None,
        prefix: str = "llmins",
        in_memory: bool = True,
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give a Qdrant server url or a local path, not both")
        self._server = url is not None
        self._client = QdrantClient(url=url) if url else QdrantClient(path=str(path))
        self.prefix = prefix
        #: Guards the client (local mode is not thread-safe). Held through writes, which
        #: wait for Qdrant's disk (a local upsert commits SQLite: 9-200 ms under load).
        self._lock = threading.Lock()
        #: Guards the in-memory copies, so queries never wait for a write's disk. Taken
        #: after ``_lock`` where both are needed (never the other way round).
        self._memory = threading.Lock()
        #: Local mode with ``in_memory``: exact copies of the served collections, by kind.
        self._mirrors: dict[str, Mirror] = {}
        self._mirrored = in_memory and not self._server
        #: What ``build`` wrote, until ``activate`` serves it (mirrored mode).
        self._built: dict[str, tuple] = {}
        #: Mirrored mode: the collection each kind serves (every switch goes through here).
        self._mirrored_collection: dict[str, str] = {}
        if self._mirrored:
            with self._lock, self._memory:
                for collection in self._served().values():
                    kind = self._kind_of(collection)
                    if kind == PROFILES:
                        continue
                    self._mirrors[kind] = self._load_mirror(kind, collection)
                    self._mirrored_collection[kind] = collection

    def collection(self, kind: str, version: str) -> str:
        """Name of ``kind``'s collection of ``version``."""
        return f"{self.prefix}-{kind}-{version}"

    def alias(self, kind: str) -> str:
        """Name of the alias that serves ``kind``."""
        return f"{self.prefix}-{kind}"

    def collections(self) -> set[str]:
        """Names of this prefix's collections, served or not (to audit the clean-up)."""
        with self._lock:
            names = [c.name for c in self._client.get_collections().collections]
        return {name for name in names if self._kind_of(name) is not None}

    def drop_versions_except(self, versions: set[str]) -> list[str]:
        """Delete this prefix's collections of every version not in ``versions`` (those a
        training or refresh built before its process died, never registered); served
        collections are always kept. Returns the names deleted."""
        with self._lock:
            served = set(self._served().values())
            names = [c.name for c in self._client.get_collections().collections]
            dropped = []
            for name in names:
                kind = self._kind_of(name)
                if kind is None or name in served:
                    continue
                if name.removeprefix(f"{self.prefix}-{kind}-") not in versions:
                    self._client.delete_collection(name)
                    dropped.append(name)
        return dropped

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
        """Create ``kind``'s collection of ``version`` and fill it; nothing serves it yet.

        A collection left by a failed build of the same version is replaced, but the one
        being served never is: rebuilding it would empty the live index.
        """
        name, distance = self.collection(kind, version), DISTANCES[kind]
        with self._lock:
            if name in self._served().values():
                raise ValueError(f"{name} is being served; build a new version instead")
            if self._client.collection_exists(name):
                self._client.delete_collection(name)
            self._client.create_collection(
                name,
                vectors_config=models.VectorParams(size=vectors.shape[1], distance=distance),
            )
            if kind == "items" and self._server:
                # The cold pool and a category are small: without an index on their fields,
                # the server's filtered HNSW search cannot plan for them (local mode has no
                # payload indexes).
                self._client.create_payload_index(name, "cold", models.PayloadSchemaType.BOOL)
                self._client.create_payload_index(
                    name, "categories", models.PayloadSchemaType.KEYWORD
                )
        if self._mirrored:
            self._built[name] = (kind, ids, vectors, payloads)
        starts = range(0, len(ids), batch)
        quiet = not progress or len(starts) <= QUIET_BATCHES
        for start in tqdm(starts, desc=f"index {kind}", disable=quiet):
            chunk = slice(start, start + batch)
            points = _batch(ids[chunk], vectors[chunk], payloads[chunk] if payloads else None)
            with self._lock:
                self._client.upsert(name, points=points, wait=True)

    def build_profiles(
        self,
        version: str,
        tables: dict[str, np.ndarray],
        histories: Sequence[np.ndarray],
        content: np.ndarray,
        batch: int = 256,
        progress: bool = False,
    ) -> None:
        """Create and fill the ``profiles`` and ``content`` collections of ``version``;
        nothing serves them yet.

        Point ``u`` of ``profiles`` holds user row ``u``'s named vectors, one per entry of
        ``tables`` (compared by inner product: the backbone's and each subtower's user
        side), and the payload :data:`ITEMS`, the item rows of ``histories[u]``. The
        ``content`` collection holds each item of some history with its row of ``content``
        and the payload :data:`USERS`. The history is kept as item rows, not as each user's
        multivector: a user's items are then read once from one table of items, and the
        users whose best match is the closest come from a dense query (see
        :meth:`shortlists`), which local mode answers with numpy where it would score a
        MAX_SIM multivector point by point in Python.
        """
        owners = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        held = np.concatenate(
            [np.zeros(0, np.int64), *(np.asarray(h, np.int64) for h in histories)]
        )
        order = np.lexsort((owners, held))
        items, starts = np.unique(held[order], return_index=True)
        users_of = np.split(owners[order], starts[1:]) if len(items) else []
        self.build(
            version,
            "content",
            items,
            np.asarray(content, dtype=np.float32)[items],
            [{USERS: np.unique(users).tolist()} for users in users_of],
            progress=progress,
        )
        name = self.collection(PROFILES, version)
        config = {
            key: models.VectorParams(size=table.shape[1], distance=models.Distance.DOT)
            for key, table in tables.items()
        }
        with self._lock:
            if name in self._served().values():
                raise ValueError(f"{name} is being served; build a new version instead")
            if self._client.collection_exists(name):
                self._client.delete_collection(name)
            self._client.create_collection(name, vectors_config=config)
        batches = range(0, len(histories), batch)
        quiet = not progress or len(batches) <= QUIET_BATCHES
        for start in tqdm(batches, desc="index profiles", disable=quiet):
            points = [
                models.PointStruct(
                    id=user,
                    vector={key: _finite(table[user]).tolist() for key, table in tables.items()},
                    payload={ITEMS: np.asarray(histories[user], dtype=np.int64).tolist()},
                )
                for user in range(start, min(start + batch, len(histories)))
            ]
            with self._lock:
                self._client.upsert(name, points=points, wait=True)

    def shortlists(
        self, queries: dict[str, np.ndarray], content: np.ndarray, limit: int
    ) -> list[tuple[np.ndarray, dict[str, np.ndarray], list[np.ndarray]]]:
        """Per item, the union of each signal's ``limit`` best users, with their vectors.

        ``queries`` holds each inner-product signal's ``(n, d)`` item-side vectors (one
        named vector each), ``content`` the items' content vectors (the history's query,
        :meth:`history_shortlists`). One batch of Query API requests finds the users, one
        retrieval reads their vectors and history rows (the same user is read once for all
        items), and the histories' content vectors are read once per item of theirs.
        Returns, per item: the user rows (ascending), each named inner-product vector of
        theirs ``(m, d)``, and each one's history (``(length, d)`` unit rows, possibly
        empty).
        """
        requests = [
            models.QueryRequest(
                query=_finite(vectors[row]).tolist(), using=name, limit=limit, with_payload=False
            )
            for row in range(len(content))
            for name, vectors in queries.items()
        ]
        alias = self.alias(PROFILES)
        answers = []
        if requests:
            with self._lock:
                answers = self._client.query_batch_points(alias, requests=requests)
        per_item = len(queries)
        by_history = self.history_shortlists(content, limit)
        unions = [
            np.union1d(
                [
                    hit.id
                    for answer in answers[row * per_item : (row + 1) * per_item]
                    for hit in answer.points
                ],
                by_history[row],
            ).astype(np.int64)
            for row in range(len(content))
        ]
        wanted = sorted({int(user) for union in unions for user in union})
        names = [*queries, BACKBONE]
        with self._lock:
            points = self._client.retrieve(alias, wanted, with_vectors=names, with_payload=[ITEMS])
        found = {int(point.id): point for point in points}
        held = {
            user: np.asarray((point.payload or {}).get(ITEMS, []), dtype=np.int64)
            for user, point in found.items()
        }
        every = np.unique(np.concatenate([np.zeros(0, np.int64), *held.values()]))
        unit = self.vectors("content", every) if len(every) else None
        out = []
        for union in unions:
            tables = {
                name: np.array(
                    [found[int(user)].vector[name] for user in union], dtype=np.float32
                ).reshape(len(union), -1)
                for name in names
            }
            histories = [
                unit[np.searchsorted(every, held[int(user)])]
                if len(held[int(user)])
                else np.zeros((0, content.shape[1]), dtype=np.float32)
                for user in union
            ]
            out.append((union, tables, histories))
        return out

    def history_shortlists(self, content: np.ndarray, limit: int) -> list[np.ndarray]:
        """Per content vector, the users whose history's best match with it is among the
        ``limit`` best (the users of its nearest history items, nearest first, until
        ``limit`` users; the last item's users all come, as a tie).

        A user's best match is the nearest item of their history, so walking the items
        from the nearest gives users in the order of a MAX_SIM query. One batch of dense
        queries on ``content``; an item whose nearest items hold too few users asks again
        for four times as many.
        """
        found: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(content)
        pending, depth = list(range(len(content))), max(limit, 1)
        while pending:
            requests = [
                models.QueryRequest(
                    query=_finite(content[row]).tolist(), limit=depth, with_payload=[USERS]
                )
                for row in pending
            ]
            with self._lock:
                answers = self._client.query_batch_points(self.alias("content"), requests=requests)
            unfinished = []
            for row, answer in zip(pending, answers, strict=True):
                users: set[int] = set()
                for hit in answer.points:
                    users.update((hit.payload or {}).get(USERS, []))
                    if len(users) >= limit:
                        break
                if len(users) < limit and len(answer.points) == depth:
                    unfinished.append(row)
                found[row] = np.array(sorted(users), dtype=np.int64)
            pending, depth = unfinished, depth * 4
        return found

    def activate(self, version: str, kinds: Sequence[str] = tuple(DISTANCES)) -> None:
        """Point the aliases of ``kinds`` at ``version`` in one update, then drop old versions.

        The switch is one ``update_collection_aliases`` call (delete and recreate each
        alias), which the server applies atomically. Per kind, the collection served until
        now is kept for rollback and every other older one is deleted.
        """
        targets = {kind: self.collection(kind, version) for kind in kinds}
        with self._lock:
            missing = [n for n in targets.values() if not self._client.collection_exists(n)]
            if missing:
                raise ValueError(f"build {missing} before activating version {version}")
            served = self._served()
            operations = []
            for kind, target in targets.items():
                alias = self.alias(kind)
                if alias in served:
                    operations.append(
                        models.DeleteAliasOperation(
                            delete_alias=models.DeleteAlias(alias_name=alias)
                        )
                    )
                operations.append(
                    models.CreateAliasOperation(
                        create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
                    )
                )
            self._client.update_collection_aliases(change_aliases_operations=operations)
            self._drop_older(targets, served)
            if self._mirrored:
                copies = {
                    kind: self._mirror_of(kind, target)
                    for kind, target in targets.items()
                    if kind != PROFILES
                }
                with self._memory:  # the switch queries see: every kind at once
                    self._mirrors.update(copies)
                    self._mirrored_collection.update(targets)

    def active_version(self, kind: str) -> str | None:
        """The version the ``kind`` alias serves, or None before the first activation.

        Every recommendation reports it: the one owner of a local folder knows it without
        asking; another process (a server's API) reads the alias.
        """
        if self._mirrored and kind != PROFILES:
            with self._memory:
                collection = self._mirrored_collection.get(kind)
        else:
            with self._lock:
                collection = self._served().get(self.alias(kind))
        return None if collection is None else collection.removeprefix(f"{self.prefix}-{kind}-")

    def upsert(
        self,
        kind: str,
        ids: Sequence[int],
        vectors: np.ndarray,
        payloads: list[dict] | None = None,
    ) -> None:
        """Write points into the served (aliased) collection; visible to queries on return.

        Queries go on from memory while Qdrant writes; the copy changes after the write,
        under the client's lock still, so concurrent writes land in one order in both.

        When a write to a served in-memory copy freezes it again (every tenth of its rows
        written since the last freeze), the rankings queries had remembered are dropped,
        and each user's next query would rank all items, as every query did before they
        were remembered (at 500 queries/s on 2 cores: p50 1.6 s, docs/results.md), until
        most users have asked again. So the writer ranks for every user again before it
        returns (:meth:`remember_rankings`: on the writer's thread, a warm-up's, while
        queries go on).
        """
        points = _batch(ids, vectors, payloads)
        with self._lock:
            self._client.upsert(self.alias(kind), points=points, wait=True)
            with self._memory:
                mirror = self._mirrors.get(kind)
                serving = mirror is not None and len(mirror.shortlists) > 0
                froze = mirror is not None and mirror.put(ids, vectors, payloads)
        if froze and serving and kind == "items":
            self.remember_rankings()

    def delete(self, kind: str, ids: Sequence[int]) -> None:
        """Delete points from the served (aliased) collection; gone from queries on return.

        Only what is served now: a version built meanwhile from the store leaves them out
        itself (:meth:`services.store.Store.indexed_items`).
        """
        wanted = [int(i) for i in ids]
        with self._lock:
            self._client.delete(
                self.alias(kind), points_selector=models.PointIdsList(points=wanted), wait=True
            )
            with self._memory:
                mirror = self._mirrors.get(kind)
                if mirror is not None:
                    mirror.remove(wanted)

    def vectors(self, kind: str, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors of ``ids``, in that order (``content`` ones come back unit-length:
        Qdrant normalises the vectors of cosine collections on write).

        Raises:
            KeyError: some ids have no point (they are named).
        """
        wanted = [int(i) for i in ids]
        with self._memory:
            if kind in self._mirrors:
                return self._mirrors[kind].get(wanted)
        with self._lock:
            points = self._client.retrieve(
                self.alias(kind), wanted, with_vectors=True, with_payload=False
            )
        found = {int(point.id): point.vector for point in points}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise KeyError(f"no {kind} vectors for ids {missing[:20]}")
        return np.array([found[i] for i in wanted], dtype=np.float32)

    def top(
        self,
        kind: str,
        query: np.ndarray,
        k: int,
        exclude: Sequence[int] = (),
        cold: bool | None = None,
        category: str | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best (id, score) of ``kind`` for ``query``, ``exclude`` left out, best first.

        Scores are the kind's measure (inner product, or cosine for ``content``). ``cold``
        restricts items to those posted (True) or those of the data set (False),
        ``category`` to those whose ``categories`` payload holds it.
        """
        return self.top_many(kind, [TopQuery(query, k, exclude, cold, category=category)])[0]

    def top_many(self, kind: str, queries: Sequence[TopQuery]) -> list[list[tuple[int, float]]]:
        """:meth:`top` for several queries at once, answers in their order.

        One pass over the collection serves them all: in memory one matrix product (a
        collection is read from memory once, not once per query), on a server one batch
        request.
        """
        if kind != "items" and any(q.cold is not None or q.category for q in queries):
            raise ValueError(f"only items have a cold pool and categories, not {kind}")
        if not queries:
            return []
        with self._memory:
            if kind in self._mirrors:
                return self._mirrors[kind].top_many(queries)
        requests = [
            models.QueryRequest(
                query=np.asarray(q.vector, dtype=np.float32).tolist(),
                limit=q.k,
                filter=_filter(q),
                with_payload=False,
            )
            for q in queries
        ]
        with self._lock:
            answers = self._client.query_batch_points(self.alias(kind), requests=requests)
        return [[(int(hit.id), float(hit.score)) for hit in answer.points] for answer in answers]

    def top_for(
        self, kind: str, by: str, queries: Sequence[PointQuery], wait: bool = True
    ) -> tuple[list[list[tuple[int, float]]], str | None] | None:
        """:meth:`top_many` of ``kind`` for the stored vectors of points of kind ``by``, and
        the version of ``kind`` that answered; in memory under one lock, so the vectors,
        the ranking and the version belong together even while a refresh switches.

        ``wait=False`` is for a caller that must not wait, an event loop: the answers only
        if they are at hand, in microseconds (in memory, the copies free, every query's
        ranking remembered), else None without blocking.
        """
        if not self._memory.acquire(blocking=wait):
            return None
        try:
            mirror, source = self._mirrors.get(kind), self._mirrors.get(by)
            if mirror is not None and source is not None:
                vectors = source.get([q.point for q in queries])
                tops = [
                    TopQuery(vector, q.k, q.exclude, q.cold, key=q.point, category=q.category)
                    for vector, q in zip(vectors, queries, strict=True)
                ]
                if wait:
                    answers = mirror.top_many(tops)
                else:
                    answers = [mirror.remembered(top) for top in tops]
                    if any(answer is None for answer in answers):
                        return None
                version = self._mirrored_collection[kind].removeprefix(f"{self.prefix}-{kind}-")
                return answers, version
        finally:
            self._memory.release()
        if not wait:  # Qdrant's own queries are never at hand
            return None
        vectors = self.vectors(by, [q.point for q in queries])
        tops = [
            TopQuery(v, q.k, q.exclude, q.cold, category=q.category)
            for v, q in zip(vectors, queries, strict=True)
        ]
        return self.top_many(kind, tops), self.active_version(kind)

    def remember_rankings(self, batch: int = 32, progress: bool = False) -> int:
        """Rank the items for every user now, so that each user's first query is as fast as
        the next (in-memory copies only; elsewhere a no-op). Returns how many users it ranked.

        One matrix product per ``batch`` users: about 1.1 s for 5,551 users x 18,700 items
        of 200 floats on one BLAS thread, against 1 ms per user when it happens query by
        query. The copies' lock is taken per batch, so queries go on meanwhile (after a
        refresh, a refreeze): 6 ms per hold with 32 users, 56 ms with 256, whose total
        is only 10 % shorter.
        """
        with self._memory:
            items, users = self._mirrors.get("items"), self._mirrors.get("users")
            if items is None or users is None:
                return 0
            keys = users.ids[: users.size].tolist()
        ranked = 0
        for start in tqdm(
            range(0, len(keys), batch), desc="rankings", unit="batch", disable=not progress
        ):
            chunk = keys[start : start + batch]
            with self._memory:
                if self._mirrors.get("items") is not items:
                    break  # another version was activated meanwhile: its rankings start anew
                vectors = users.get(chunk)
                items.top_many([TopQuery(v, 1, key=k) for v, k in zip(vectors, chunk, strict=True)])
            ranked += len(chunk)
        return ranked

    def count(self, kind: str) -> int:
        """Exact number of points ``kind``'s alias serves."""
        with self._lock:
            return self._client.count(self.alias(kind), exact=True).count

    def close(self) -> None:
        """Release the client (in local mode: the folder's lock, so it can be reopened)."""
        with self._lock:
            self._client.close()

    def _mirror_of(self, kind: str, collection: str) -> Mirror:
        """The copy of a collection just activated: from what ``build`` wrote, else read."""
        built = self._built.pop(collection, None)
        if built is None:
            return self._load_mirror(kind, collection)
        mirror = Mirror(cosine=DISTANCES[kind] == models.Distance.COSINE)
        mirror.put(*built[1:])
        mirror.freeze()
        return mirror

    def _load_mirror(self, kind: str, collection: str) -> Mirror:
        """Every point of ``collection`` (e.g. after a restart), read in pages."""
        mirror = Mirror(cosine=DISTANCES[kind] == models.Distance.COSINE)
        offset = None
        while True:
            points, offset = self._client.scroll(
                collection, limit=4096, offset=offset, with_vectors=True, with_payload=True
            )
            if points:
                mirror.put(
                    [p.id for p in points],
                    np.array([p.vector for p in points], dtype=np.float32),
                    [p.payload or {} for p in points],
                )
            if offset is None:
                mirror.freeze()
                return mirror

    def _served(self) -> dict[str, str]:
        """alias -> collection, for this prefix's aliases (caller holds the lock)."""
        mine = {self.alias(kind) for kind in KINDS}
        aliases = self._client.get_aliases().aliases
        return {a.alias_name: a.collection_name for a in aliases if a.alias_name in mine}

    def _kind_of(self, name: str) -> str | None:
        """The kind of one of this prefix's versioned collections, else None."""
        return next((k for k in KINDS if name.startswith(f"{self.prefix}-{k}-")), None)

    def _drop_older(self, targets: dict[str, str], served: dict[str, str]) -> None:
        """Delete each switched kind's collections but the new and the previously served one.

        Re-activating the served version leaves the kind alone: its previous is unknown.
        """
        names = [c.name for c in self._client.get_collections().collections]
        for kind, target in targets.items():
            previous = served.get(self.alias(kind))
            if previous == target:
                continue
            for name in names:
                if self._kind_of(name) == kind and name not in (target, previous):
                    self._client.delete_collection(name)


def item_payload(cold: bool, categories: Sequence[str] | None = None) -> dict:
    """What an ``items`` point carries: the pool flag, and its categories where it has some
    (what ``cold`` and ``category`` queries filter on)."""
    payload: dict = {"cold": bool(cold)}
    if categories:
        payload["categories"] = [str(category) for category in categories]
    return payload


def _filter(query: TopQuery) -> models.Filter | None:
    """Qdrant's filter for a query's left-out ids, pool and category."""
    conditions = {}
    if len(query.exclude):
        conditions["must_not"] = [models.HasIdCondition(has_id=[int(i) for i in query.exclude])]
    must = []
    if query.cold is not None:
        must.append(models.FieldCondition(key="cold", match=models.MatchValue(value=query.cold)))
    if query.category is not None:  # a list payload matches when one of its values does
        must.append(
            models.FieldCondition(key="categories", match=models.MatchValue(value=query.category))
        )
    if must:
        conditions["must"] = must
    return models.Filter(**conditions) if conditions else None


def _batch(ids: Sequence[int], vectors: np.ndarray, payloads: list[dict] | None) -> models.Batch:
    """Points as plain ints and floats (what both transports accept).

    Non-finite values are refused here: a server rejects them in JSON, local mode would
    store them and rank with NaN scores.
    """
    array = _finite(vectors)
    if len(array) != len(ids) or (payloads is not None and len(payloads) != len(ids)):
        raise ValueError(f"{len(ids)} ids for {len(array)} vectors")
    return models.Batch(ids=[int(i) for i in ids], vectors=array.tolist(), payloads=payloads)


def _finite(vectors: np.ndarray) -> np.ndarray:
    """float32, refused when not finite (a server rejects NaN in JSON, local mode ranks
    with it)."""
    array = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(array).all():
        raise ValueError("vectors must be finite")
    return array
