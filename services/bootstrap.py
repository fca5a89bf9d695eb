"""First start and full retraining: model versions trained on a data set, in the stores.

After it, the service knows the data set's users, its warm items and their real
interactions (training and validation parts), serves recommendations, and warms whatever
is posted; the data set's cold items are what users post. Running it again on a store that
already has an active model version does nothing; ``train`` replaces the active version with
a new one trained from the data set.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.data import load_dataset
from models.data.dataset import ColdStartDataset
from models.data.split import split_cold_start
from models.encoders import encode_cached
from models.llmins.release import NO_LM, ModelRelease, train_release
from models.llmins.simulator import SimulatorConfig
from models.llmins.variants import LLMInSConfig
from models.runs import RunConfig
from services.index import BACKBONE, PROFILES, item_payload
from services.runtime import Runtime, new_version_name
from services.settings import NO_DATASET

logger = logging.getLogger(__name__)


def bootstrap(runtime: Runtime, max_epochs: int | None = None, progress: bool = True) -> str | None:
    """Train, load and index the configured data set; returns the active version (None for
    a service configured to start empty)."""
    active = runtime.store.active_version()
    if active is not None:
        logger.info("model version %s is active: nothing to bootstrap", active.id)
        return active.id
    if runtime.settings.dataset == NO_DATASET:
        logger.info(
            "starting empty (LLMINS_DATASET=%s): recommendations fall back to popular items "
            "until a model version is trained from the store",
            NO_DATASET,
        )
        return None
    return install(runtime, *configured_data(runtime, progress), max_epochs, progress)


def configured_data(runtime: Runtime, progress: bool) -> tuple[ColdStartDataset, np.ndarray]:
    """The configured data set and its content vectors (cached on disk)."""
    settings = runtime.settings
    dataset = load_dataset(settings.dataset, settings.data_dir)
    logger.info("training on %s", dataset.summary())
    content = encode_cached(runtime.encoder, dataset.item_texts, settings.cache_dir, progress)
    return dataset, content


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
    release, folder = train_version(
        runtime, dataset, content, max_epochs, progress, warmer, simulator
    )
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
    return publish(runtime, release, folder)


def train(runtime: Runtime, max_epochs: int | None = None, progress: bool = True) -> str:
    """A new version from the configured data set, replacing the active one (``train``);
    from the store's own data where no data set is configured (``LLMINS_DATASET=none``)."""
    if runtime.settings.dataset == NO_DATASET:
        return train_from_store(runtime, max_epochs, progress)
    return retrain(runtime, *configured_data(runtime, progress), max_epochs, progress)


def retrain(
    runtime: Runtime,
    dataset: ColdStartDataset,
    content: np.ndarray,
    max_epochs: int | None = None,
    progress: bool = True,
) -> str:
    """Train a new version on ``dataset``, warm every posted item with it, then switch."""
    release, folder = train_version(runtime, dataset, content, max_epochs, progress)
    return switch_to(runtime, release, folder, dataset.warm_items)


def train_from_store(runtime: Runtime, max_epochs: int | None = None, progress: bool = True) -> str:
    """A new version trained on the store's own items and real interactions (a service
    started empty, ``LLMINS_DATASET=none``, or fed by imports), then switched to.

    Every item gets its row first; the paper's split of the store's interactions gives the
    validation items every choice is made on (seed 0). Items the backbone learned (those in
    the split's training part) become warm from their interactions; every other item, new
    or held out for validation, is warmed by the new version like a posted one.

    Raises:
        NotEnoughData: fewer real interactions or items with interactions than the
            settings' thresholds.
    """
    store = runtime.store
    settings = runtime.settings
    store.index_every_item()
    data = store.training_snapshot()
    items_used = len(np.unique(data.pairs[:, 1]))
    if len(data.pairs) < settings.train_min_interactions or items_used < settings.train_min_items:
        raise NotEnoughData(
            f"the store holds {len(data.pairs)} real interactions with {items_used} items; "
            f"training needs {settings.train_min_interactions} and "
            f"{settings.train_min_items} (LLMINS_TRAIN_MIN_INTERACTIONS, "
            "LLMINS_TRAIN_MIN_ITEMS)"
        )
    dataset = split_cold_start(
        "store", "item", len(data.user_ids), data.item_texts, data.pairs, seed=0
    )
    logger.info("training from the store: %s", dataset.summary())
    content = runtime.embed_all(data.item_texts, progress)
    release, folder = train_version(
        runtime, dataset, content, max_epochs, progress, user_ids=data.user_ids
    )
    return switch_to(runtime, release, folder, dataset.warm_items, data.new_users, content)


class NotEnoughData(LookupError):
    """The store holds too little to train a model version from (a retry would fail the
    same way until more data arrives)."""


def switch_to(
    runtime: Runtime,
    release: ModelRelease,
    folder: Path,
    learned: np.ndarray,
    new_users: dict[str, int] | None = None,
    content: np.ndarray | None = None,
) -> str:
    """Warm every item ``release`` did not learn from interactions, index, then switch.

    A new backbone is a new vector space: posted items' vectors of the old one would be
    meaningless in it, so they are warmed again (in one batch) before the aliases move,
    and their simulated interactions are replaced by the new version's. ``new_users``
    (users outside the previous model the new one has rows for) get their rows at the
    switch, with the items it learned; users with rows past the new version's are
    folded in again. ``content``: the content vectors of every item by
    its row, where the caller has them (a training from the store); else the posted items'
    texts are embedded here.
    """
    store = runtime.store
    catalogue = store.indexed_items()
    known = set(learned.tolist())
    posted = [
        store.get_item(item_id) for row, (item_id, _) in catalogue.items() if row not in known
    ]
    texts = [item.text for item in posted]
    warmed = None
    extra = None
    if posted:
        rows = np.array([item.index for item in posted])
        vectors = runtime.embed(texts) if content is None else content[rows]
        warmed = release.warmer.warm(vectors, texts, runtime.simulator_for(release))
        extra = (rows, warmed.vectors)
    index_release(runtime, release, learned, extra)
    version = publish(runtime, release, folder)
    # After the switch: a user given a row before it would be looked up in the old
    # version's tables. A process that dies here leaves those users folded in (their rows
    # unused until the next training) and items with their old status: nothing wrong.
    store.release_rows_from(len(release.user_ids))
    if new_users:
        store.adopt_users(new_users)
    learned_ids = [catalogue[row][0] for row in known if row in catalogue]
    store.mark_warm(learned_ids, release.version, "dataset")
    store.mark_warm([item.id for item in posted], release.version, "api")
    for row, item in enumerate(posted):
        store.replace_simulated(
            item.id,
            release.simulated_users(warmed, row),
            release.version,
            release.evidence(warmed, row),
        )
    # Their warm-ups are done by this switch (an item posted before the first version
    # still had its job queued).
    store.finish_warm_ups([*learned_ids, *(item.id for item in posted)], release.version)
    return version


def train_version(
    runtime: Runtime,
    dataset: ColdStartDataset,
    content: np.ndarray,
    max_epochs: int | None = None,
    progress: bool = True,
    warmer: LLMInSConfig | None = None,
    simulator: SimulatorConfig | None = None,
    user_ids: list[str] | None = None,
) -> tuple[ModelRelease, Path]:
    """Train and save a version (see :func:`install` for ``warmer`` and ``simulator``);
    ``user_ids`` names the users by row (default: the data set's rows, as strings)."""
    settings = runtime.settings
    version = new_version_name(settings.backbone)
    base = str(settings.simulator_base) if settings.simulator_base else None
    simulator = simulator or SimulatorConfig(model_path=base)
    if warmer is None:
        warmer = replace(NO_LM, lm="auto") if base else NO_LM
    config = RunConfig(
        backbone=settings.backbone,
        encoder_path=str(settings.encoder_path) if settings.encoder_path else None,
        simulator=simulator,
        progress=progress,
    )
    release = train_release(dataset, content, version, config, warmer, max_epochs=max_epochs)
    if user_ids is not None:
        release = replace(release, user_ids=user_ids)
    return release, release.save(runtime.models_dir / version)


def publish(
    runtime: Runtime, release: ModelRelease, folder: Path, metrics: dict | None = None
) -> str:
    """Record the indexed version (with ``metrics``, default its warmer's) and activate it.

    Then the stable adapter path points at the new version's simulator adapter (where it
    has one), and the folders of versions too old to keep are deleted.
    """
    record = release.manifest["warmer"] if metrics is None else metrics
    record = {**record, "lm_used": release.warmer.uses_lm}
    runtime.store.register_version(release.version, str(folder), record)
    runtime.store.activate(release.version)
    logger.info("model version %s active (%s)", release.version, folder)
    if release.manifest.get("simulator_path"):
        link_adapter(runtime.settings.adapter_link, Path(release.manifest["simulator_path"]))
    prune_versions(runtime)
    return release.version


def link_adapter(link: Path, adapter: Path) -> None:
    """Point ``link`` at ``adapter`` in one step (a new link renamed over the old one), so
    the refining service (``--adapter``, compose's ``/state/simulator``) never reads a
    missing or half-switched path."""
    link.parent.mkdir(parents=True, exist_ok=True)
    staged = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
    staged.symlink_to(adapter.resolve(), target_is_directory=True)
    os.replace(staged, link)


def prune_versions(runtime: Runtime) -> list[str]:
    """Delete the folders of inactive versions beyond the newest ``keep_previous_versions``.

    Their store rows stay (items name the version that warmed them, and its record says
    whether it asked the LM); the index keeps the previously served collections by itself.
    Returns the pruned versions' ids.
    """
    keep = runtime.settings.keep_previous_versions
    models_dir = runtime.models_dir.resolve()
    inactive = [record for record in runtime.store.versions() if not record.active]
    pruned = []
    for record in inactive[keep:]:
        folder = Path(record.path).resolve()
        # Only folders this service wrote: a path elsewhere is the operator's.
        if folder.is_dir() and folder.is_relative_to(models_dir):
            shutil.rmtree(folder)
            pruned.append(record.id)
    if pruned:
        logger.info("deleted the folders of %d old model versions: %s", len(pruned), pruned)
    return pruned


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


def index_release(
    runtime: Runtime,
    release: ModelRelease,
    items: np.ndarray,
    posted: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Build the version's collections and switch the aliases.

    Items: the data set's ``items`` with the backbone's vectors, and ``posted`` (row
    indices, vectors) as cold ones, withdrawn items left out; users: all of them, and their
    profiles with the histories' content (what the warm-up's filter retrieves candidates
    from).
    """
    ids, vectors = items, release.items[items]
    payloads = [item_payload(cold=False)] * len(items)
    if posted is not None:
        ids = np.concatenate([ids, posted[0]])
        vectors = np.concatenate([vectors, posted[1]])
        labels = runtime.store.categories_of(posted[0])
        payloads += [item_payload(True, labels.get(int(row))) for row in posted[0]]
    shown = ~np.isin(ids, sorted(runtime.store.withdrawn_indices()))
    ids, vectors = ids[shown], vectors[shown]
    payloads = [payload for payload, kept in zip(payloads, shown, strict=True) if kept]
    index = runtime.index
    index.build(release.version, "items", ids, vectors, payloads)
    index.build(release.version, "users", np.arange(len(release.users)), release.users)
    history = release.warmer.history
    histories = [history.histories.of(user) for user in range(len(release.users))]
    tables = {BACKBONE: release.users, **release.warmer.table_users()}
    index.build_profiles(release.version, tables, histories, history.content)
    index.activate(release.version, kinds=("items", "users", "content", PROFILES))
    # Withdrawn while this version was built: out of what it serves now.
    late = sorted(runtime.store.withdrawn_indices() & set(ids.tolist()))
    if late:
        index.delete("items", late)
