"""What one service process shares: the stores, the active model, the encoder, the simulator.

The API (embedded mode) and every Celery worker process build one :class:`Runtime` from
the settings. Heavy pieces load on first use, and the active model follows the store: when
a refresh activates a new version, the next call here loads it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from models.encoders import MeanPoolEncoder, encode_cached
from models.llmins.candidates import CandidateSource
from models.llmins.release import ModelRelease
from models.llmins.update import fold_in, ridge_inverse
from services.candidates import IndexCandidates
from services.fallback import PopularFallback
from services.index import PROFILES, VectorIndex
from services.settings import Settings
from services.simulator.client import SimulatorClient
from services.simulator.process import RefiningProcess
from services.store import Store

logger = logging.getLogger(__name__)


def new_version_name(label: str) -> str:
    """A model version name: readable time, what made it, and a suffix that never repeats."""
    return time.strftime("v%Y%m%d-%H%M%S", time.gmtime()) + f"-{label}-{uuid.uuid4().hex[:6]}"


class Runtime:
    """Stores, model and encoder of one process, built from ``settings``.

    ``embedder`` replaces the language model's content vectors (tests with synthetic data
    use word counts); None uses the configured encoder.
    """

    def __init__(
        self,
        settings: Settings,
        embedder: Callable[[list[str]], np.ndarray] | None = None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.resolved_database_url, settings.seen_cache_s)
        self.store.migrate()
        self.index = (
            VectorIndex(url=settings.qdrant_url)
            if settings.qdrant_url
            else VectorIndex(path=settings.state_dir / "qdrant")
        )
        self._release: ModelRelease | None = None
        self._release_lock = threading.Lock()
        self._simulators: dict[str, SimulatorClient] = {}
        self._refining: dict[str, RefiningProcess] = {}
        self._asked_lm: dict[str, bool] = {}
        #: (version, the item table's ridge inverse) for users outside the model.
        self._fold_in: tuple[str, np.ndarray] | None = None

    @property
    def models_dir(self) -> Path:
        return self.settings.state_dir / "models"

    @cached_property
    def fallback(self) -> PopularFallback:
        """Recommendations for users without a model (:mod:`services.fallback`)."""
        return PopularFallback(self.store, self.settings.fallback_window_s)

    @cached_property
    def encoder(self) -> MeanPoolEncoder:
        return MeanPoolEncoder(self.settings.encoder_path)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Content vectors, as the model was trained on (the same encoder, mean pooling)."""
        if self.embedder is not None:
            return self.embedder(texts)
        return self.encoder.encode(texts, progress=False)

    def embed_all(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Content vectors of a whole catalogue: as :meth:`embed`, cached on disk (a
        retraining reads the same texts again)."""
        if self.embedder is not None:
            return self.embedder(list(texts))
        return encode_cached(self.encoder, list(texts), self.settings.cache_dir, progress)

    def release(self, tables: bool = False) -> ModelRelease:
        """The active model version, loaded once per version.

        Its warmer holds every user's tables only where warm-ups scan them
        (``candidates=exact``, or a version indexed without user profiles) or ``tables``
        asks (a refresh, which trains and indexes from them; loaded apart, not kept).

        Raises:
            LookupError: no model version is active yet (run ``bootstrap`` first).
        """
        active = self.store.active_version()
        if active is None:
            raise LookupError(
                "no model version is active: run `python -m services.worker bootstrap`"
            )
        if tables:
            return ModelRelease.load(active.path, tables=True)
        with self._release_lock:
            if self._release is None or self._release.version != active.id:
                scan = (
                    self.settings.candidates == "exact"
                    or self.index.active_version(PROFILES) != active.id
                )
                logger.info(
                    "loading model version %s from %s (candidates: %s)",
                    active.id,
                    active.path,
                    "every user, in memory" if scan else "the index's user profiles",
                )
                self._release = ModelRelease.load(active.path, tables=scan)
            return self._release

    def fold_in_user(self, item_rows: Sequence[int]) -> np.ndarray:
        """A vector for a user the active version was not trained with, from the served
        vectors of the items they interacted with (:func:`models.llmins.update.fold_in`,
        with the ridge the version chose on validation)."""
        release = self.release()
        with self._release_lock:
            if self._fold_in is None or self._fold_in[0] != release.version:
                inverse = ridge_inverse(np.asarray(release.items), release.fold_in_ridge)
                self._fold_in = (release.version, inverse)
            inverse = self._fold_in[1]
        return fold_in(self.index.vectors("items", item_rows), inverse)

    def candidate_source(self, release: ModelRelease) -> CandidateSource | None:
        """Where ``release``'s warm-ups find candidate users: the index's user profiles,
        or None (every user, from the tables the warmer holds)."""
        warmer = release.warmer
        if warmer.has_tables:
            return None
        return IndexCandidates(self.index, warmer.moments, self.settings.candidate_depth)

    def asked_lm(self, version: str | None) -> bool:
        """Whether model version ``version``'s warm-up asks the LM simulator (recorded
        with the version; remembered, as a version never changes)."""
        if version is None:
            return False
        if version not in self._asked_lm:
            record = self.store.version(version)
            metrics = (record.metrics if record else None) or {}
            self._asked_lm[version] = bool(metrics.get("lm_used"))
        return self._asked_lm[version]

    def simulator_for(self, release: ModelRelease) -> Callable[[list[str]], np.ndarray] | None:
        """P(Yes) of prompts for ``release``'s warmer, asked of the refining service over
        HTTP: ``LLMINS_SIMULATOR_URL``, or (embedded mode) a child process this runtime
        starts for the version's adapter.

        None for versions whose warmer does not ask the LM (the default).

        Raises:
            RuntimeError: distributed mode without ``LLMINS_SIMULATOR_URL``, or a child
                that did not start (the warm-up is then retried, the item served by its
                content vector meanwhile).
        """
        if not release.warmer.uses_lm:
            return None
        if release.version not in self._simulators:
            url = self.settings.simulator_url or self._start_refining_service(release)
            self._simulators[release.version] = SimulatorClient(
                url, self.settings.simulator_model, self.settings.simulator_timeout_s
            )
        return self._simulators[release.version].p_yes

    def refining_url(self, version: str) -> str | None:
        """The URL of the refining service this runtime started for ``version`` (None:
        none started)."""
        child = self._refining.get(version)
        return None if child is None else child.url

    def _start_refining_service(self, release: ModelRelease) -> str:
        if self.settings.mode == "distributed":
            raise RuntimeError(
                f"model version {release.version} asks the LM: distributed mode needs "
                "LLMINS_SIMULATOR_URL (the refining service: vLLM, or python -m "
                "services.simulator --adapter STATE/simulator)"
            )
        # One version is served at a time: the previous version's child goes first, so its
        # model leaves memory and a fixed LLMINS_SIMULATOR_PORT is free for the new one. In
        # embedded mode warm-ups run one at a time, so none of the old version is in flight.
        self._stop_refining_services()
        child = RefiningProcess(
            Path(release.manifest["simulator_path"]),
            self.settings.simulator_model,
            self.settings.state_dir / "logs" / f"refining-{release.version}.log",
            self.settings.simulator_port,
        )
        url = child.start()
        self._refining[release.version] = child
        return url

    def prepare_to_serve(self) -> None:
        """Fill what the recommendation path remembers (ids, every user's seen items and,
        in memory, ranking), so the first query of each user is as fast as the next."""
        started = time.perf_counter()
        users = self.store.remember_lookups()
        ranked = self.index.remember_rankings()
        logger.info(
            "ready to serve: seen items of %d users, rankings of %d, in %.1f s",
            users,
            ranked,
            time.perf_counter() - started,
        )

    def _stop_refining_services(self) -> None:
        for version, child in list(self._refining.items()):
            child.stop()
            del self._refining[version]
            self._simulators.pop(version, None)

    def close(self) -> None:
        self._stop_refining_services()
        self.index.close()
        self.store.dispose()
