"""The periodic refresh: retrain the backbone on real ∪ simulated interactions, swap indexes.

Users who arrived since the active version get rows, and every user's history (what the
warm-up's filter and the user profiles read) becomes their real interactions now.

A new model version is trained from the active one (:func:`refresh_release`), written to
its own folder, indexed into new collections, and only then made active by one alias
switch, so queries never see a half-built index. If anything fails before the switch,
the old version keeps serving. Items warmed while the refresh ran are warmed again under
the new version afterwards.
"""

from __future__ import annotations

import numpy as np

from models.llmins.history import UserHistories
from models.llmins.release import ModelRelease, refresh_release
from models.llmins.update import fold_in, ridge_inverse
from services.bootstrap import index_release, publish
from services.runtime import Runtime, new_version_name
from services.store import TrainingData


def refresh(runtime: Runtime, max_epochs: int = 100, progress: bool = False) -> dict:
    """Train, index and activate a new model version; returns its refresh record.

    ``rewarm`` in the record lists the ids of items warmed while it ran: the caller
    warms them again (their vectors live only in the old collections). Nothing new since
    the active version (no real interaction recorded, no item warmed) skips it: the
    record says so and names the version that keeps serving. ``graduated`` lists the
    posted items that had gathered as many real users as the warm-up keeps per item: their
    simulated interactions are dropped, and the new version serves them as learned items.
    """
    store = runtime.store
    active = store.active_version()
    if active is None:
        raise LookupError("no model version is active: train one first")
    serving = runtime.release()  # the serving copy: no tables to read
    data = store.training_snapshot(
        since=active.created_at,
        first_new_row=len(serving.user_ids),
        texts_from=0 if _reads_every_text(runtime, serving) else len(serving.items),
    )
    trained, new = data.pairs[~data.recent], data.pairs[data.recent]
    warmed = store.simulated_since(active.created_at)
    if not len(new) and not warmed:
        return {
            "version": active.id,
            "skipped": f"nothing changed since version {active.id}: no new real "
            "interaction, no item warmed",
            "rewarm": [],
        }
    release = runtime.release(tables=True)
    catalogue = store.indexed_items()
    fresh = np.array(
        [index for index, (_, origin) in catalogue.items() if origin == "api"], dtype=np.int64
    )
    # Posted items with as many real users as the warm-up simulates for an item graduate:
    # trained on their real interactions alone, then served as learned items.
    keep = release.warmer.config.keep or release.warmer.config.k_filter
    real = store.real_counts([catalogue[row][0] for row in fresh.tolist()])
    graduates = np.array(
        [row for row in fresh.tolist() if real.get(catalogue[row][0], 0) >= keep],
        dtype=np.int64,
    )
    simulated = store.simulated_interaction_indices()
    simulated = simulated[~np.isin(simulated[:, 1], graduates)]
    n_items = max(len(release.items), max(catalogue, default=-1) + 1, len(data.item_texts))
    texts = (data.item_texts + [""] * n_items)[:n_items]
    item_vectors = np.zeros((n_items, release.items.shape[1]), dtype=np.float32)
    item_vectors[: len(release.items)] = release.items
    if len(fresh):
        item_vectors[fresh] = runtime.index.vectors("items", fresh.tolist())
    version = new_version_name("refresh")
    refreshed = refresh_release(
        release,
        trained,
        new,
        simulated,
        item_vectors,
        fresh,
        version,
        content=_content_of_every_row(runtime, release, texts),
        texts=None if None in texts else texts,
        new_users=_arrived_users(release, data, item_vectors),
        refit_text_to_users=runtime.settings.refresh_refits_text_to_users,
        refit_collaborative_map=runtime.settings.refresh_refits_collaborative_map,
        max_epochs=max_epochs,
        progress=progress,
    )
    folder = refreshed.save(runtime.models_dir / version)
    known = np.array(
        [index for index, (_, origin) in catalogue.items() if origin == "dataset"], dtype=np.int64
    )
    known = np.concatenate([known, graduates])
    cold = np.setdiff1d(fresh, graduates)
    index_release(runtime, refreshed, known, (cold, refreshed.items[cold]))
    publish(runtime, refreshed, folder, refreshed.manifest["refresh"])
    graduated = [catalogue[row][0] for row in graduates.tolist()]
    store.graduate(graduated, version)
    # After the switch, as at a training's: their rows exist in the active version now.
    store.adopt_users(data.new_users)
    runtime.index.remember_rankings()  # the new vectors' rankings (in memory only)
    # Warmed during the refresh: their vectors are only in the old collection.
    now = store.indexed_items()
    missed = sorted(now[index][0] for index in set(now) - set(catalogue))
    return {
        "version": version,
        **refreshed.manifest["refresh"],
        "graduated": graduated,
        "rewarm": missed,
    }


def _reads_every_text(runtime: Runtime, release: ModelRelease) -> bool:
    """Whether a refresh of ``release`` needs the text of every item, not only of those
    indexed since: its prompts list history texts, or the text-to-users refit runs a
    fine-tuned LM over every item."""
    warmer = release.warmer
    refits_lm = (
        runtime.settings.refresh_refits_text_to_users
        and warmer.text_to_users is not None
        and warmer.text_to_users.finetuned
    )
    return warmer.prompts is not None or refits_lm


def _content_of_every_row(
    runtime: Runtime, release: ModelRelease, texts: list[str | None]
) -> np.ndarray:
    """Content vectors of every item row (``texts``: one per row): the version's own, and
    the items indexed since (posted ones) embedded from their texts, for the users'
    histories."""
    n_items = len(texts)
    known = np.asarray(release.warmer.history.content, dtype=np.float32)[:n_items]
    if len(known) == n_items:
        return known
    unread = [row for row in range(len(known), n_items) if texts[row] is None]
    if unread:
        raise RuntimeError(f"item rows from {unread[0]} have no content vector and no text")
    added = runtime.embed_all(texts[len(known) :])
    return np.concatenate([known, added.astype(np.float32)])


def _arrived_users(
    release: ModelRelease, data: TrainingData, item_vectors: np.ndarray
) -> tuple[list[str], np.ndarray] | None:
    """Users outside the model with real interactions: their ids, in row order, and the
    vectors they start the training from (folded in from the items they interacted with,
    as they are served until now)."""
    first = len(release.user_ids)
    if len(data.user_ids) <= first:
        return None
    histories = UserHistories.from_pairs(data.pairs, len(data.user_ids))
    inverse = ridge_inverse(item_vectors, release.fold_in_ridge)
    rows = range(first, len(data.user_ids))
    start = np.stack([fold_in(item_vectors[histories.of(row)], inverse) for row in rows])
    return data.user_ids[first:], start
