"""LLM-InS for items that arrive one at a time: what the online service runs per item.

:class:`ItemWarmer` holds everything the pipeline learned on a data set (the subtowers'
content maps and user tables, the history similarity, the merge weights, the refiner, the
ridge and the cold-row length chosen on validation) and applies it to content vectors of
items that did not exist when it was fitted. It calls the same functions as the offline
pipeline, so an item warmed here gets the users and the vector that the offline
``llmins-online`` run gives it (tests/llmins/test_online.py checks it).

It is saved as plain tensors (``torch.load(weights_only=True)`` reads it back, no pickled
classes) so a model version is a folder the service can load in another process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.baselines.generator import ContentMap, rescale_to_norm
from models.llmins.filtering import merge, standardize_rows, top_users
from models.llmins.history import HistorySimilarity, UserHistories
from models.llmins.pipeline import VARIANTS, LLMInSConfig, Workbench, simulate
from models.llmins.refine import Refiner, candidate_features, select
from models.llmins.update import fit_item_vectors, online_update, ridge_inverse

logger = logging.getLogger(__name__)

WARMER_FILE = "warmer.pt"
MANIFEST_FILE = "warmer.json"


@dataclass(frozen=True)
class ColdScale:
    """The length given to generated cold rows, as chosen on validation.

    ``raw``: every row times ``factor * warm_norm / fitted_norm`` (relative lengths kept);
    ``unit``: every row at length ``factor * warm_norm``.
    """

    mode: str
    factor: float
    warm_norm: float
    fitted_norm: float

    @classmethod
    def from_info(cls, info: dict) -> ColdScale:
        """From the ``cold_scale`` record of :func:`models.baselines.common.choose_cold_scale`."""
        mode, factor = info["cold_scale"].split("*")
        return cls(mode, float(factor), info["warm_item_norm"], info["generated_cold_norm"])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        if self.mode == "unit":
            return rescale_to_norm(vectors, self.factor * self.warm_norm)
        multiplier = self.factor * self.warm_norm / max(self.fitted_norm, 1e-12)
        return (vectors * multiplier).astype(np.float32)


@dataclass
class WarmedItems:
    """What warming a batch of items produced, row by row.

    Attributes:
        candidates: ``(n, k_filter)`` users the filter proposed, best first.
        kept: per item, the simulated users (refiner's order, best first).
        probabilities: per item, the refiner's probability for each kept user (relative to
            its candidate list: the refiner ranks within a list).
        vectors: ``(n, d)`` behavioural vectors in the backbone's space, length applied.
    """

    candidates: np.ndarray
    kept: list[np.ndarray]
    probabilities: list[np.ndarray]
    vectors: np.ndarray


@dataclass
class ItemWarmer:
    """Filter, refine and fit for new items, from content vectors alone.

    Attributes:
        signals: the filter signals, in the refiner's feature order.
        content_maps: content -> item vector per subtower signal (collaborative, language).
        signal_users: the subtowers' user tables, scored against those item vectors.
        history: the late-interaction history similarity over the warm items.
        weights: merge weight per signal (validation's choice).
        refiner: the refiner's logistic regression (None: keep the filter's order).
        users: the backbone's user vectors, held fixed by the online update.
        ridge: the update's ridge strength (validation's choice).
        scale: the length of fitted rows (validation's choice).
        content_scale: the length of rows generated from content alone (the fallback).
    """

    config: LLMInSConfig
    signals: tuple[str, ...]
    content_maps: dict[str, ContentMap]
    signal_users: dict[str, np.ndarray]
    history: HistorySimilarity
    weights: dict[str, float]
    refiner: Refiner | None
    users: np.ndarray
    ridge: float
    scale: ColdScale
    content_scale: ColdScale

    def __post_init__(self) -> None:
        self.inverse = ridge_inverse(self.users, self.ridge)
        self.log_history_length = np.log1p(self.history.histories.lengths())

    @property
    def n_users(self) -> int:
        return len(self.users)

    def warm(self, content: np.ndarray) -> WarmedItems:
        """Simulated users and fitted vectors for items with content vectors ``content``."""
        content = np.atleast_2d(content).astype(np.float32)
        signals = {name: standardize_rows(self._raw_scores(name, content)) for name in self.signals}
        merged = merge(signals, self.weights)
        candidates = top_users(merged, self.config.k_filter)
        if self.refiner is None:
            # The filter's own order: its first ``keep`` candidates.
            order_scores = -np.arange(candidates.shape[1], dtype=np.float64)[None, :].repeat(
                len(candidates), 0
            )
            mask = select(order_scores, self.config.keep or self.config.k_filter)
        else:
            features = candidate_features(
                signals, self.signals, merged, candidates, self.log_history_length
            )
            order_scores = self.refiner.logits(features)
            mask = select(order_scores, self.config.keep, self.config.threshold)
        kept, probabilities = [], []
        for row in range(len(candidates)):
            columns = np.flatnonzero(mask[row])
            columns = columns[np.argsort(-order_scores[row, columns], kind="stable")]
            kept.append(candidates[row, columns])
            probabilities.append(1.0 / (1.0 + np.exp(-order_scores[row, columns])))
        pairs = np.array(
            [(user, row) for row, users in enumerate(kept) for user in users], dtype=np.int64
        ).reshape(-1, 2)
        fitted = fit_item_vectors(self.users, pairs, np.arange(len(content)), self.inverse)
        return WarmedItems(candidates, kept, probabilities, self.scale.apply(fitted))

    def content_vectors(self, content: np.ndarray) -> np.ndarray:
        """Behavioural vectors from content alone (the collaborative subtower's).

        What an item is served with before, or instead of, its simulated interactions: it
        is recommendable the moment it arrives, and stays so when warming fails.
        """
        generated = self.content_maps["collaborative"](np.atleast_2d(content))
        return self.content_scale.apply(generated)

    def _raw_scores(self, name: str, content: np.ndarray) -> np.ndarray:
        if name == "history":
            return self.history.scores_of_vectors(content)
        return self.content_maps[name](content) @ self.signal_users[name].T

    # -- persistence -------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write ``warmer.pt`` (tensors) and ``warmer.json`` (settings, readable)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "content_maps": {
                name: _tensors(content_map.state())
                for name, content_map in self.content_maps.items()
            },
            "signal_users": {name: torch.from_numpy(t) for name, t in self.signal_users.items()},
            "history_indptr": torch.from_numpy(self.history.histories.indptr),
            "history_items": torch.from_numpy(self.history.histories.items),
            "content": self.history.unit.clone(),
            "users": torch.from_numpy(self.users),
            "refiner": None if self.refiner is None else _tensors(vars(self.refiner)),
        }
        torch.save(tensors, folder / WARMER_FILE)
        manifest = {
            "config": self.config.to_dict(),
            "signals": list(self.signals),
            "weights": self.weights,
            "history_top": self.history.top,
            "ridge": self.ridge,
            "scale": vars(self.scale),
            "content_scale": vars(self.content_scale),
            "refiner_names": None if self.refiner is None else list(self.refiner.names),
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ItemWarmer:
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        tensors = torch.load(folder / WARMER_FILE, weights_only=True)
        histories = UserHistories(
            indptr=tensors["history_indptr"].numpy(), items=tensors["history_items"].numpy()
        )
        config = LLMInSConfig.from_dict(manifest["config"])
        refiner = None
        if tensors["refiner"] is not None:
            state = {key: _numpy(value) for key, value in tensors["refiner"].items()}
            refiner = Refiner(**{**state, "names": tuple(manifest["refiner_names"])})
        return cls(
            config=config,
            signals=tuple(manifest["signals"]),
            content_maps={
                name: ContentMap.from_state(_numpy_state(state))
                for name, state in tensors["content_maps"].items()
            },
            signal_users={name: t.numpy() for name, t in tensors["signal_users"].items()},
            history=HistorySimilarity(
                histories, tensors["content"].numpy(), manifest["history_top"]
            ),
            weights=manifest["weights"],
            refiner=refiner,
            users=tensors["users"].numpy(),
            ridge=manifest["ridge"],
            scale=ColdScale(**manifest["scale"]),
            content_scale=ColdScale(**manifest["content_scale"]),
        )


def fit_item_warmer(
    bench: Workbench, config: LLMInSConfig = VARIANTS["llmins-online"]
) -> tuple[ItemWarmer, dict]:
    """Run ``config`` on the bench's cold items and keep what it chose, for new items.

    The validation items choose the merge weights, the refiner, the ridge and the length,
    as in the benchmark; the returned info is the variant's record (precision, choices).
    """
    if config.lm not in ("never", "auto") or config.update != "online":
        raise ValueError("the item warmer runs the online update without the LM simulator")
    config = replace(config, lm="never")
    simulation = simulate(bench, config)
    _, update_info = online_update(bench.dataset, bench.users, bench.items, simulation.pairs)
    # The collaborative map is kept even when its signal is not: it is the fallback vector.
    content_maps = {"collaborative": bench.collaborative.content_map}
    signal_users = {}
    if "collaborative" in config.signals:
        signal_users["collaborative"] = bench.collaborative.users
    if "language" in config.signals:
        content_maps["language"] = bench.language.item_map
        signal_users["language"] = bench.language.users
    warmer = ItemWarmer(
        config=config,
        signals=config.signals,
        content_maps=content_maps,
        signal_users=signal_users,
        history=bench.history,
        weights=simulation.weights,
        refiner=simulation.refiner,
        users=bench.users,
        ridge=update_info["ridge"],
        scale=ColdScale.from_info(update_info),
        content_scale=ColdScale.from_info(bench.collaborative.info),
    )
    return warmer, {**simulation.info, "online_update": update_info}


def _tensors(state: dict) -> dict:
    """Arrays as tensors, nested dicts kept, scalars kept: what ``weights_only`` loads."""
    out = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, dict):
            out[key] = _tensors(value)
        elif isinstance(value, tuple):
            continue  # names: kept in the manifest, readable
        else:
            out[key] = value
    return out


def _numpy(value):
    return value.numpy() if isinstance(value, torch.Tensor) else value


def _numpy_state(state: dict) -> dict:
    return {key: value if key == "network" else _numpy(value) for key, value in state.items()}
