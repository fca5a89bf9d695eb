"""A model version for the online service: a trained backbone and an item warmer, in a folder.

:func:`train_release` runs, on a data set, what the benchmark runs for ``llmins-online``:
the backbone on the warm training interactions, then the subtowers, filter, refiner and
update choices on the validation items, kept as an :class:`ItemWarmer`. The folder holds
plain arrays and a readable ``manifest.json`` (data fingerprint, settings, validation
choices, timings), so any process can load it and anyone can see what it is.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.backbones import BackboneConfig, build_backbone
from models.baselines import GENERATOR_GRID
from models.baselines.aldi import fit_aldi
from models.baselines.generator import ContentMap, GeneratorConfig
from models.data.dataset import ColdStartDataset
from models.data.split import hold_out_items, refit_split
from models.evaluation import rank_metrics
from models.llmins.history import UserHistories
from models.llmins.online import ItemWarmer, WarmedItems, fit_item_warmer
from models.llmins.simulator import LMSimulator
from models.llmins.text_to_users import TextToUsersConfig
from models.llmins.towers import TowerConfig
from models.llmins.update import choose_fold_in_ridge
from models.llmins.variants import VARIANTS, LLMInSConfig
from models.llmins.workbench import COLLABORATIVE_TERMS, Workbench
from models.runs import RunConfig, library_versions, train_backbone
from models.training import TrainConfig, train_bpr

MANIFEST = "manifest.json"
SIMULATOR_DIR = "simulator"

logger = logging.getLogger(__name__)

#: The service's default warm-up: llmins-online without the LM simulator.
NO_LM = replace(VARIANTS["llmins-online"], lm="never")


@dataclass
class ModelRelease:
    """What the service serves with: backbone vectors and the warmer of new items.

    Attributes:
        version: a name unique per training run.
        user_ids: the outside world's id of each user row.
        users, items: the backbone's vectors (row = user or item index; score = inner
            product). Rows of items the backbone never saw are meaningless.
        backbone_state: the backbone's parameters (its ego embeddings: a graph backbone's
            exported vectors are propagated ones), where a refresh starts from.
        warmer: filter, refine and fit for new items.
        manifest: provenance and measurements (JSON).
        simulator: the tuned LM simulator where the warmer asks it (saved as a peft
            adapter in ``simulator/``, which ``python -m services.simulator`` or vLLM
            serves); not loaded by :meth:`load`, which only needs its folder.
    """

    version: str
    user_ids: list[str]
    users: np.ndarray
    items: np.ndarray
    backbone_state: dict[str, torch.Tensor]
    warmer: ItemWarmer
    manifest: dict
    simulator: LMSimulator | None = None

    @property
    def fold_in_ridge(self) -> float:
        """The ridge of a user folded in (:func:`models.llmins.update.fold_in`), chosen on
        validation; a version made before that choice uses its item update's."""
        return float(self.manifest.get("fold_in", {}).get("ridge", self.warmer.ridge))

    def simulated_users(self, warmed: WarmedItems, row: int) -> list[tuple[str, float]]:
        """(user id, probability) of the users simulated for item ``row``, best first."""
        return [
            (self.user_ids[user], float(p))
            for user, p in zip(warmed.kept[row], warmed.probabilities[row], strict=True)
        ]

    @staticmethod
    def evidence(warmed: WarmedItems, row: int) -> list[dict[str, float | None]]:
        """Why each user simulated for item ``row`` was kept (:attr:`WarmedItems.evidence`),
        in :meth:`simulated_users`' order, as names to values (None: not finite)."""
        return [
            {
                name: float(value) if np.isfinite(value) else None
                for name, value in zip(warmed.evidence_names, values, strict=True)
            }
            for values in warmed.evidence[row]
        ]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "user_ids.json").write_text(json.dumps(self.user_ids))
        np.save(folder / "users.npy", self.users)
        np.save(folder / "items.npy", self.items)
        torch.save(self.backbone_state, folder / "backbone.pt")
        self.warmer.save(folder / "warmer")
        adapter = folder / SIMULATOR_DIR
        if self.simulator is not None:
            self.simulator.save(adapter)
            self.manifest["simulator_path"] = str(adapter.resolve())
        elif self.manifest.get("simulator_path"):
            # A refreshed version asks the adapter it was refreshed from: a copy of it, so
            # that every version folder stands alone and old ones can be deleted.
            shutil.copytree(self.manifest["simulator_path"], adapter, dirs_exist_ok=True)
            self.manifest["simulator_path"] = str(adapter.resolve())
        (folder / MANIFEST).write_text(json.dumps(self.manifest, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path, tables: bool = True) -> ModelRelease:
        """The release saved in ``folder``. ``tables=False`` is what a warm-up needs when
        its candidates come from the vector index: every user's tables stay on disk (the
        backbone's vectors are mapped, read only where a refresh or an index build asks).
        """
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text())
        mapped = None if tables else "r"
        return cls(
            version=manifest["version"],
            user_ids=json.loads((folder / "user_ids.json").read_text()),
            users=np.load(folder / "users.npy", mmap_mode=mapped),
            items=np.load(folder / "items.npy", mmap_mode=mapped),
            backbone_state=torch.load(folder / "backbone.pt", weights_only=True),
            warmer=ItemWarmer.load(folder / "warmer", tables=tables),
            manifest=manifest,
        )


def train_release(
    dataset: ColdStartDataset,
    content: np.ndarray,
    version: str,
    config: RunConfig,
    warmer_config: LLMInSConfig = NO_LM,
    seed: int = 0,
    max_epochs: int | None = None,
) -> ModelRelease:
    """Train the backbone and fit the item warmer on ``dataset`` (its validation items).

    ``warmer_config`` is ``llmins-online`` without the LM simulator by default (MiniLM
    measured no gain on CiteULike); with ``lm="auto"`` the simulator (``config.simulator``)
    is tuned, measured, and kept where validation says it helps. ``max_epochs`` caps
    every training loop (backbone, subtowers) for quick trials; None keeps the tuned
    settings. Users keep the data set's ids, as decimal strings.
    """
    towers, collaborative = TowerConfig(), GENERATOR_GRID["aldi"]
    deepmusic = GENERATOR_GRID["deepmusic"]
    text_to_users = TextToUsersConfig()
    if max_epochs is not None:
        config = replace(config, train_config=replace(config.train_config, max_epochs=max_epochs))
        towers = replace(towers, training=replace(towers.training, max_epochs=max_epochs))
        collaborative = tuple(replace(g, max_epochs=max_epochs) for g in collaborative)
        deepmusic = tuple(replace(g, max_epochs=max_epochs) for g in deepmusic)
        text_to_users = replace(text_to_users, max_epochs=min(max_epochs, text_to_users.max_epochs))
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    backbone, training = train_backbone(dataset, config, seed)
    seconds["backbone"] = time.perf_counter() - started
    users, items = backbone.model.export_embeddings()
    fold_in_ridge, fold_in_scores = choose_fold_in_ridge(dataset, items)
    bench = Workbench(
        dataset,
        content,
        users,
        items,
        seed,
        config.simulator,
        towers=towers,
        collaborative=collaborative,
        deepmusic=deepmusic,
        text_to_users=text_to_users,
        encoder_path=config.encoder_path,
        progress=config.progress,
    )
    started = time.perf_counter()
    warmer, info, simulator = fit_item_warmer(bench, warmer_config)
    seconds["warmer"] = time.perf_counter() - started
    logger.info(
        "warmer fitted in %.0f s: %s",
        seconds["warmer"],
        ", ".join(f"{stage} {spent:.0f} s" for stage, spent in bench.seconds.items()),
    )
    manifest = {
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {**dataset.summary(), "fingerprint": dataset.fingerprint},
        "backbone": {
            "name": config.backbone,
            "config": config.backbone_config.to_dict(),
            "train": config.train_config.to_dict(),
            "training": training,
        },
        "encoder": config.encoder_path,
        # How users the version was not trained with get a vector (models.llmins.update).
        "fold_in": {"ridge": fold_in_ridge, "val_warm_ndcg_by_ridge": fold_in_scores},
        "warmer": {
            "lm_used": simulator is not None,
            # What the decision read: the LM's gain among the refiner's candidates on
            # validation (and test), with standard errors; None where no LM was configured.
            "lm_measurement": info.get("lm_measurement"),
            "simulator": None if simulator is None else simulator.config.to_dict(),
            "precision_val": info.get("val_precision"),
            "precision_test": info.get("test_precision"),
            "filter_weights": info.get("filter_weights"),
            "collaborative_subtower": info.get("collaborative_subtower"),
            "refiner_weights": info.get("refiner_weights"),
            "online_update": {
                key: value
                for key, value in info["online_update"].items()
                if key in ("keep", "ridge", "blend", "cold_scale")
            },
            "text_to_users": info.get("text_to_users"),
        },
        "seconds": seconds,
        # Where the warmer's time went (subtowers, text-to-users, DeepMusic, signals...):
        # what a slow bootstrap is read from.
        "warmer_seconds_by_stage": dict(bench.seconds),
        "versions": library_versions(),
    }
    user_ids = [str(user) for user in range(dataset.n_users)]
    state = {key: value.detach().clone() for key, value in backbone.model.state_dict().items()}
    return ModelRelease(version, user_ids, users, items, state, warmer, manifest, simulator)


def refresh_release(
    release: ModelRelease,
    trained: np.ndarray,
    new: np.ndarray,
    simulated: np.ndarray,
    item_vectors: np.ndarray,
    fresh: np.ndarray,
    version: str,
    content: np.ndarray,
    texts: list[str] | None = None,
    new_users: tuple[list[str], np.ndarray] | None = None,
    refit_text_to_users: bool = False,
    refit_collaborative_map: bool = False,
    holdout: float = 0.1,
    min_held_out: int = 20,
    epochs_unvalidated: int = 5,
    lr_factor: float = 1.0,
    max_epochs: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> ModelRelease:
    """The backbone retrained on real ∪ simulated (user, item) index pairs, and the
    warmer's user tables with it.

    ``trained`` are the real interactions the release was trained on, ``new`` those that
    arrived since. It starts from the current parameters; the rows of ``fresh`` items
    (warmed since the backbone was trained) start from their served vectors in
    ``item_vectors``, whose length gives the item count. The learning rate is the tuned
    one times ``lr_factor``: items with only a handful of new interactions must move (at
    1/30, the offline update's share, they barely did in 30 epochs), and the held-out
    check below keeps the rest from drifting.

    Early stopping needs interactions neither the release nor this training saw: a random
    ``holdout`` share of the *new* real ones, whose NDCG@20 over all items picks the epoch,
    the starting point included (old interactions would favour the start, which has fitted
    them). With fewer than ``min_held_out`` of them, it trains ``epochs_unvalidated``
    epochs and keeps the result.

    Users who arrived since (``new_users``: their ids and starting vectors, folded in
    from the items they interacted with) get the next rows and are trained with the
    rest. The warmer follows (:meth:`ItemWarmer.following`): its user tables are the new
    users' vectors, every user's history is their real interactions now (``content``
    holds every item row's content vector, ``texts`` their texts where prompts list
    them), and its validation choices stay. With ``refit_text_to_users``, the
    text-to-users heads learn the new backbone's space from the real interactions, stopped
    early on a ``holdout`` share of items they do not train on (:meth:`TextToUsers.refitted`;
    a fine-tuned LM needs ``texts`` for it); without, they keep the first version's.
    With ``refit_collaborative_map``, the collaborative subtower's content map is trained
    further against the new backbone on the real interactions, judged the same way
    (:func:`refitted_collaborative_map`); without, it keeps the first version's.
    """
    rng = np.random.default_rng(seed)
    held_out = rng.random(len(new)) < holdout
    if held_out.sum() < min_held_out:
        held_out[:] = False
    validation = new[held_out]
    train = np.concatenate([trained, new[~held_out], simulated]).astype(np.int64)
    user_ids = list(release.user_ids)
    start_users = np.asarray(release.users, dtype=np.float32)
    if new_users is not None:
        user_ids += new_users[0]
        start_users = np.concatenate([start_users, new_users[1].astype(np.float32)])
    n_users, n_items = len(user_ids), len(item_vectors)
    name = release.manifest["backbone"]["name"]
    backbone_config = BackboneConfig(**release.manifest["backbone"]["config"])
    tuned = TrainConfig(**release.manifest["backbone"]["train"])
    train_config = replace(
        tuned,
        lr=tuned.lr * lr_factor,
        max_epochs=max_epochs,
        seed=seed,
    )
    model = build_backbone(name, n_users, n_items, train, backbone_config)
    state = dict(release.backbone_state)
    old_egos = state["item_embedding.weight"]
    egos = torch.zeros((n_items, old_egos.shape[1]), dtype=old_egos.dtype)
    egos[: min(len(old_egos), n_items)] = old_egos[:n_items]
    egos[torch.from_numpy(fresh)] = torch.from_numpy(item_vectors[fresh]).to(old_egos.dtype)
    state["item_embedding.weight"] = egos
    old_users = state["user_embedding.weight"]
    user_egos = torch.from_numpy(start_users).to(old_users.dtype)
    user_egos[: len(old_users)] = old_users
    state["user_embedding.weight"] = user_egos
    model.load_state_dict(state, strict=False)
    everything = np.arange(n_items)
    held_out_ndcg = None
    if len(validation):

        def held_out_ndcg(model) -> float:
            users, items = model.export_embeddings()
            return rank_metrics(users, items, everything, validation, train)["ndcg@20"]

    else:
        train_config = replace(train_config, max_epochs=epochs_unvalidated)
    result = train_bpr(
        model,
        train,
        held_out_ndcg,
        train_config,
        item_pool=everything,
        progress=progress,
        description=f"refresh {name}",
        validate_start=bool(len(validation)),
    )
    users, items = model.export_embeddings()
    manifest = {
        **release.manifest,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "refresh": {
            "from": release.version,
            "trained": int(len(trained)),
            "new": int(len(new)),
            "simulated": int(len(simulated)),
            "new_users": 0 if new_users is None else len(new_users[0]),
            "held_out": int(held_out.sum()),
            "best_epoch": result.best_epoch,
            "best_held_out_ndcg@20": result.best_score,
            "epochs_run": result.epochs_run,
            "seconds": result.seconds,
        },
    }
    state = {key: value.detach().clone() for key, value in model.state_dict().items()}
    real = np.concatenate([trained, new]).astype(np.int64)
    histories = UserHistories.from_pairs(real, n_users)
    text_to_users = release.warmer.text_to_users
    refit = text_to_users is not None and refit_text_to_users
    if refit and (texts is not None or not text_to_users.finetuned):
        text_to_users = text_to_users.refitted(
            texts if texts is not None else [""] * n_items,
            content,
            real,
            users,
            items,
            holdout=holdout,
            min_held_out=min_held_out,
            epochs_unvalidated=epochs_unvalidated,
            progress=progress,
        )
        refit = text_to_users.info["refit"]
        manifest["refresh"]["text_to_users"] = {
            key: refit[key] for key in ("best_epoch", "start", "best", "epochs_run", "seconds")
        }
    collaborative_map = None
    if refit_collaborative_map:
        collaborative_map, record = refitted_collaborative_map(
            release, content, real, users, items, holdout, min_held_out, seed, progress
        )
        manifest["refresh"]["collaborative_map"] = record
    warmer = release.warmer.following(
        users, histories, content, texts, text_to_users, collaborative_map
    )
    return ModelRelease(version, user_ids, users, items, state, warmer, manifest)


def refitted_collaborative_map(
    release: ModelRelease,
    content: np.ndarray,
    pairs: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    holdout: float = 0.1,
    min_held_out: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> tuple[ContentMap | None, dict]:
    """The collaborative subtower's content map trained further against a retrained
    backbone (``users``, ``items``) on the real ``pairs``, and a record of the refit.

    The collaborative signal scores the backbone's users with the item's mapped content,
    so a refresh that moves the backbone leaves the map aiming at where items used to be.
    The refit starts from the map, with the settings validation chose for it, and is
    judged as the first fit was, on items it never trains on: a random ``holdout`` share
    of the items, whose users the mapped vectors must rank (cold NDCG@20 among them).
    The starting map counts as epoch 0, so a refit that does not beat it keeps it. The
    held-out items are ones the starting map trained on, so this judgment leans towards
    the start: a refit wins where the backbone moved, not by chance. None (and the reason
    in the record) where the version has no such map or too few items (``min_held_out``)
    can be held out.
    """
    start = release.warmer.content_maps.get("collaborative")
    chosen = (release.manifest["warmer"].get("collaborative_subtower") or {}).get("chosen")
    if start is None or chosen is None:
        return None, {"skipped": "the version has no collaborative subtower's map"}
    held = hold_out_items(pairs, holdout, min_held_out, seed)
    if not len(held):
        return None, {"skipped": f"fewer than {min_held_out} items to judge a refit on"}
    fitted = fit_aldi(
        refit_split(pairs, held, len(users), len(items)),
        content,
        users,
        items,
        replace(GeneratorConfig(**chosen), seed=seed),
        COLLABORATIVE_TERMS,
        progress,
        start=start,
    )
    keys = ("best_epoch", "start_val", "best_val", "epochs_run", "seconds")
    return fitted.content_map, {
        **{key: fitted.info[key] for key in keys},
        "held_out_items": len(held),
    }
