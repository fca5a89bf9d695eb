"""Candidate users of new items from the vector index: the warm-up's source in the service.

Each signal's best users come from Qdrant (:meth:`services.index.VectorIndex.shortlists`):
an inner-product query per subtower, and for the history the users of the item's nearest
history items (ranked by their single best match, as a MAX_SIM query would; the filter
averages the best few: Qdrant's order is close to the filter's, not the same). The union
is then scored exactly here, from the vectors Qdrant returns, and standardised with the
model version's :class:`~models.llmins.candidates.SignalMoments`.
So a warm-up reads a few hundred users per item, never every user's tables, and the same
code runs on a local folder (embedded) and a server (distributed).

What it can differ in from the exact scan: a user outside every signal's shortlist who
would have entered the merged top ``k_filter``, and the history's spread, estimated on a
sample of users. ``depth`` (shortlist length per signal, in multiples of ``k_filter``)
trades the first against the query's cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from models.llmins.candidates import CandidatePool, SignalMoments
from models.llmins.history import late_interaction
from services.index import BACKBONE, VectorIndex


@dataclass
class IndexCandidates:
    """:class:`~models.llmins.candidates.CandidateSource` over the ``profiles`` collection."""

    index: VectorIndex
    moments: SignalMoments
    depth: int = 2

    def pools(
        self, queries: Mapping[str, np.ndarray], content: np.ndarray, limit: int
    ) -> list[CandidatePool]:
        mean, std = self.moments.of_items(queries, content)
        pools = []
        shortlists = self.index.shortlists(dict(queries), content, self.depth * limit)
        for row, (users, tables, histories) in enumerate(shortlists):
            raw = {
                name: tables[name] @ np.asarray(queries[name][row], np.float32) for name in queries
            }
            raw["history"] = late_interaction(content[row], histories, self.moments.reference.top)
            pools.append(
                CandidatePool(
                    users=users,
                    raw=raw,
                    mean={name: float(values[row]) for name, values in mean.items()},
                    std={name: float(values[row]) for name, values in std.items()},
                    backbone=tables[BACKBONE],
                    history_lengths=np.array([len(h) for h in histories], dtype=np.int64),
                )
            )
        return pools
