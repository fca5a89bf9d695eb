"""First start: train a model version on a data set's warm part and load it into the stores.

After it, the service knows the data set's users, its warm items and their real
interactions (training and validation parts), serves recommendations, and warms whatever
is posted; the data set's cold items are what users post. Running it again on a store that
already has an active model version does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from models.benchmark import BenchmarkConfig
from models.data import load_dataset
from models.data.dataset import ColdStartDataset
from models.encoders import encode_cached
from models.llmins.pipeline import LLMInSConfig
from models.llmins.release import NO_LM, ModelRelease, train_release
from models.llmins.simulator import SimulatorConfig
from services.runtime import Runtime, new_version_name

logger = logging.getLogger(__name__)


def bootstrap(runtime: Runtime, max_epochs: int | None = None, progress: bool = True) -> str:
    """Train, load and index the configured data set; returns the active version."""
    active = runtime.store.active_version()
    if active is not None:
        logger.info("model version %s is active: nothing to bootstrap", active.id)
        return active.id
    settings = runtime.settings
    dataset = load_dataset(settings.dataset, settings.data_dir)
    logger.info("bootstrapping from %s", dataset.summary())
    content = encode_cached(runtime.encoder, dataset.item_texts, settings.cache_dir, progress)
    return install(runtime, dataset, content, max_epochs, progress)


def install(
    runtime: Runtime,
    dataset: ColdStartDataset,
    content: np.ndarray,
    max_epochs: int | None = None,
    progress: bool = True,
    warmer: LLMInSConfig | None = None,
    simulator: SimulatorConfig | None = None,
) -> str:
    """Train a version on ``dataset`` (content vectors ``content``), load it, activate it.

    ``warmer`` and ``simulator`` default to what the settings say: no LM, or, with
    ``simulator_base``, that model tuned and kept where validation measures a gain.
    """
    settings = runtime.settings
    version = new_version_name(settings.backbone)
    base = str(settings.simulator_base) if settings.simulator_base else None
    simulator = simulator or SimulatorConfig(model_path=base)
    if warmer is None:
        warmer = replace(NO_LM, lm="auto") if base else NO_LM
    config = BenchmarkConfig(
        backbone=settings.backbone,
        methods=("backbone",),
        encoder_path=str(settings.encoder_path) if settings.encoder_path else None,
        simulator=simulator,
        progress=progress,
    )
    release = train_release(dataset, content, version, config, warmer, max_epochs=max_epochs)
    folder = release.save(runtime.models_dir / version)
    # A bootstrap that died after loading the catalogue left it in the store: a rerun
    # trains again and keeps it. Each table loads in one transaction, so only a run that
    # died between tables leaves a part, which a rerun must not build on.
    if runtime.store.is_empty():
        load_catalogue(runtime, dataset)
    else:
        counts = runtime.store.counts()
        complete = (
            counts["users"] == dataset.n_users
            and counts["items"].get("warm", 0) >= len(dataset.warm_items)
            and counts["interactions"].get("real", 0) > 0
        )
        if not complete:
            raise RuntimeError(
                f"the store holds part of a catalogue ({counts}), from an interrupted "
                "bootstrap: empty it (the state folder, or the database) and run again"
            )
    index_release(runtime, release, dataset.warm_items)
    runtime.store.register_version(version, str(folder), release.manifest["warmer"])
    runtime.store.activate(version)
    logger.info("model version %s active (%s)", version, folder)
    return version


def load_catalogue(runtime: Runtime, dataset: ColdStartDataset) -> None:
    """Users, warm items and their real interactions; ids are the data set's, as strings.

    Real interactions are the warm training and validation parts: what the service has
    seen. The test parts stay unseen, for the replay benchmark to score against.
    """
    store = runtime.store
    store.load_users([(str(user), user) for user in range(dataset.n_users)])
    store.load_items(
        [(str(item), dataset.item_texts[item], int(item), "warm") for item in dataset.warm_items]
    )
    seen = np.concatenate([dataset.splits["warm_train"], dataset.splits["warm_val"]])
    store.load_interactions([(str(user), str(item)) for user, item in seen.tolist()])


def index_release(runtime: Runtime, release: ModelRelease, items: np.ndarray) -> None:
    """Build the version's collections (warm items, all users) and switch the aliases."""
    index = runtime.index
    index.build(
        release.version,
        "items",
        items,
        release.items[items],
        [{"cold": False}] * len(items),
    )
    index.build(release.version, "users", np.arange(len(release.users)), release.users)
    index.activate(release.version, kinds=("items", "users"))
