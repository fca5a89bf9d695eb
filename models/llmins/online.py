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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from models.baselines.generator import ContentMap, rescale_to_norm
from models.llmins.candidates import CandidateSource, ExactScan, SignalMoments, table_signals
from models.llmins.filtering import merge, top_users
from models.llmins.history import HistorySimilarity, UserHistories
from models.llmins.pipeline import simulate, update_online
from models.llmins.prompts import PromptBuilder
from models.llmins.refine import (
    Refiner,
    candidate_features,
    feature_names,
    probability,
    select,
)
from models.llmins.simulator import LMSimulator
from models.llmins.text_to_users import Mapped, TextToUsers
from models.llmins.towers import history_inputs
from models.llmins.update import TARGETS, Blend, ridge_inverse
from models.llmins.variants import VARIANTS, LLMInSConfig
from models.llmins.workbench import Workbench

logger = logging.getLogger(__name__)

WARMER_FILE = "warmer.pt"
#: Every user's tables, apart: a warmer whose candidates come from a vector index never
#: reads them (a version saved before the split holds them in ``warmer.pt``).
TABLES_FILE = "user_tables.pt"
MANIFEST_FILE = "warmer.json"
TEXTS_FILE = "texts.json"
TEXT_TO_USERS_DIR = "text_to_users"
#: Signals whose user table is the backbone's user vectors (the collaborative subtower
#: maps content into the backbone's item space; text-to-users is aligned to it).
BACKBONE_TABLES = ("collaborative", "text2users")
#: The evidence column of the LM simulator's answer (:attr:`WarmedItems.evidence`).
LM_EVIDENCE = "lm P(yes)"


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
        evidence: per item, why each kept user was kept: ``(kept, len(evidence_names))``
            values, each filter signal standardised over the item's pool, the user's
            log(1 + history length), the merged filter score, and the LM's P(Yes) where
            the warmer asks it (it asks about every candidate the refiner then ranks).
        evidence_names: the columns of ``evidence``.
    """

    candidates: np.ndarray
    kept: list[np.ndarray]
    probabilities: list[np.ndarray]
    vectors: np.ndarray
    evidence: list[np.ndarray]
    evidence_names: tuple[str, ...]


@dataclass
class ItemWarmer:
    """Filter, refine and fit for new items, from content vectors alone.

    Every user's tables (``signal_users``, ``history``, ``users``) are what
    :meth:`exact_scan` scores and what a vector index is built from; a warmer loaded
    without them (``tables=False``) warms items from a :class:`CandidateSource`'s pools,
    with the ``inverse`` and ``moments`` it carries.

    Attributes:
        signals: the filter signals, in the refiner's feature order.
        content_maps: content -> item vector per subtower signal (collaborative, language),
            and the prior's map where the blend reads one besides text-to-users.
        signal_users: the subtowers' user tables, scored against those item vectors.
        history: the late-interaction history similarity over the warm items.
        weights: merge weight per signal (validation's choice).
        refiner: the refiner's logistic regression (None: keep the filter's order).
        users: the backbone's user vectors, held fixed by the online update.
        ridge: the update's ridge strength (validation's choice).
        target: what each kept user is scored in the ridge fit (validation's choice of
            :data:`models.llmins.update.TARGETS`; ``confidence`` needs the refiner).
        scale: the length of fitted rows (validation's choice).
        content_scale: the length of rows generated from content alone (the fallback).
        screen: where validation measured a gain from the LM simulator, the refiner
            without it, which picks the ``lm_candidates`` per item the LM scores; the
            ``refiner`` then ranks those with the LM's answer as one more feature.
        prompts: the simulator's prompts (with ``screen``).
        text_to_users: the LM tuned to map an item's text into the users' space, where the
            ``text2users`` signal or the prior reads it.
        blend: the mix of the fitted vector with a content map's prior (validation's).
        user_tower: the language subtower's user tower (input:
            :func:`models.llmins.towers.history_inputs`), which gives a user whose history
            changed a new ``language`` row; None in versions saved before it was kept.
        inverse: the update's ``(U^T U + ridge I)^-1`` (computed from ``users`` if None).
        moments: each signal's spread over users (computed from the tables if None).
    """

    config: LLMInSConfig
    signals: tuple[str, ...]
    content_maps: dict[str, ContentMap]
    signal_users: dict[str, np.ndarray] | None
    history: HistorySimilarity | None
    weights: dict[str, float]
    refiner: Refiner | None
    users: np.ndarray | None
    ridge: float
    scale: ColdScale
    content_scale: ColdScale
    screen: Refiner | None = None
    prompts: PromptBuilder | None = None
    text_to_users: TextToUsers | None = None
    blend: Blend = Blend()
    user_tower: ContentMap | None = None
    inverse: np.ndarray | None = None
    moments: SignalMoments | None = None
    target: str = "uniform"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}")
        if self.target == "confidence" and self.refiner is None:
            raise ValueError("a confidence target needs the refiner's probabilities")
        if self.inverse is None:
            self.inverse = ridge_inverse(self.users, self.ridge)
        if self.moments is None:
            self.moments = SignalMoments.of(self.table_users(), self.history)

    @property
    def has_tables(self) -> bool:
        """Whether every user's tables are in memory (else a source must pool candidates)."""
        return self.users is not None

    @property
    def uses_lm(self) -> bool:
        return self.screen is not None

    def exact_scan(self) -> ExactScan:
        """Every user as a candidate, from the tables in memory (what the benchmark runs)."""
        if not self.has_tables:
            raise ValueError("this warmer was loaded without the users' tables: pass a source")
        return ExactScan(self.table_users(), self.history, self.users)

    def table_users(self) -> dict[str, np.ndarray]:
        """The user table of each inner-product signal (what profiles index, per name)."""
        return {name: self.signal_users[name] for name in table_signals(self.signals)}

    def following(
        self,
        users: np.ndarray,
        histories: UserHistories,
        content: np.ndarray,
        texts: Sequence[str] | None = None,
        text_to_users: TextToUsers | None = None,
        collaborative_map: ContentMap | None = None,
    ) -> ItemWarmer:
        """This warmer's choices (weights, refiner, maps, update) over new user tables.

        What a refresh hands on: ``users`` are the retrained backbone's user vectors (more
        rows where users arrived), ``histories`` every user's real interactions now, and
        ``content`` (``texts``, where prompts list them) every item row's content, items
        posted since included. The collaborative and text-to-users signals score the
        backbone's users, so their tables become ``users``, and ``text_to_users`` (heads
        refitted to them, :meth:`TextToUsers.refitted`) replaces the encoder where given;
        the language table is the user tower over the new histories (a version without the
        tower keeps its rows and gives new users zero rows); the history similarity reads
        the new histories. ``collaborative_map`` (refitted to the new backbone) replaces
        the collaborative subtower's content map where given. Validation's choices and the
        other content maps stay as the first version fitted them: re-fitting them needs
        the workbench's validation items, which a refresh does not run.
        """
        if not self.has_tables:
            raise ValueError("a warmer loaded without the users' tables cannot follow new ones")
        tables = {}
        for name, table in self.signal_users.items():
            if name in BACKBONE_TABLES:
                tables[name] = users
            elif self.user_tower is not None:
                inputs = history_inputs(histories, content, self.content_maps[name])
                tables[name] = self.user_tower(inputs)
            else:
                logger.warning("version without a user tower: new users get zero %s rows", name)
                grown = np.zeros((len(users), table.shape[1]), dtype=np.float32)
                grown[: len(table)] = table
                tables[name] = grown
        history = HistorySimilarity(histories, content, self.history.top)
        prompts = self.prompts
        if prompts is not None:
            prompts = replace(
                prompts,
                texts=prompts.texts if texts is None else list(texts),
                histories=histories,
                content=content,
            )
        content_maps = dict(self.content_maps)
        if collaborative_map is not None:
            content_maps["collaborative"] = collaborative_map
        return replace(
            self,
            signal_users=tables,
            content_maps=content_maps,
            history=history,
            users=users,
            prompts=prompts,
            text_to_users=text_to_users or self.text_to_users,
            inverse=None,
            moments=None,
        )

    def queries(self, content: np.ndarray, mapped: Mapped | None) -> dict[str, np.ndarray]:
        """Each inner-product signal's item-side vectors: what a source scores users with."""
        return {
            name: mapped.users if name == "text2users" else self.content_maps[name](content)
            for name in table_signals(self.signals)
        }

    def warm(
        self,
        content: np.ndarray,
        texts: Sequence[str] | None = None,
        lm: Callable[[list[str]], np.ndarray] | None = None,
        source: CandidateSource | None = None,
    ) -> WarmedItems:
        """Simulated users and fitted vectors for items with content vectors ``content``.

        A warmer with :attr:`text_to_users` or one that :attr:`uses_lm` needs the items'
        ``texts``; one that :attr:`uses_lm` also needs ``lm``, a function from prompts to
        P(Yes) (the refining service's client, or the simulator in process). ``source``
        pools each item's candidate users (default: every user, :meth:`exact_scan`).
        """
        content = np.atleast_2d(content).astype(np.float32)
        mapped = None
        if self.text_to_users is not None:
            if texts is None:
                raise ValueError("this warmer reads the items' texts: pass texts")
            mapped = self.text_to_users.vectors(list(texts), content)
        source = self.exact_scan() if source is None else source
        pools = source.pools(self.queries(content, mapped), content, self.config.k_filter)
        width = min(self.config.k_filter, min(len(pool.users) for pool in pools))
        local, candidates, features = [], [], []
        for pool in pools:
            signals = {name: pool.standardized(name)[None] for name in self.signals}
            merged = merge(signals, self.weights)
            best = top_users(merged, width)
            local.append(best[0])
            candidates.append(pool.users[best[0]])
            features.append(
                candidate_features(
                    signals, self.signals, merged, best, np.log1p(pool.history_lengths)
                )[0]
            )
        local, candidates, features = np.stack(local), np.stack(candidates), np.stack(features)
        names = feature_names(self.signals)
        if self.refiner is None:
            # The filter's own order: its first ``keep`` candidates.
            order_scores = -np.arange(width, dtype=np.float64)[None, :].repeat(len(pools), 0)
            mask = select(order_scores, self.config.keep or self.config.k_filter)
        else:
            if self.uses_lm:
                if texts is None or lm is None:
                    raise ValueError("this warmer asks the LM simulator: pass texts and lm")
                order, logits = self._ask_lm(content, texts, candidates, features, lm)
                local = np.take_along_axis(local, order, axis=1)
                candidates = np.take_along_axis(candidates, order, axis=1)
                features = np.take_along_axis(features, order[..., None], axis=1)
                features = np.concatenate([features, logits[..., None]], axis=-1)
                names.append(LM_EVIDENCE)
            order_scores = self.refiner.logits(features)
            mask = select(order_scores, self.config.keep, self.config.threshold)
        kept, probabilities, evidence = [], [], []
        fitted = np.zeros((len(pools), self.inverse.shape[0]), dtype=np.float32)
        for row, pool in enumerate(pools):
            columns = np.flatnonzero(mask[row])
            columns = columns[np.argsort(-order_scores[row, columns], kind="stable")]
            kept.append(candidates[row, columns])
            probabilities.append(probability(order_scores[row, columns]))
            evidence.append(features[row, columns].astype(np.float64))
            if len(columns):
                kept_users = pool.backbone[local[row, columns]].astype(np.float64)
                if self.target == "confidence":
                    kept_users *= probabilities[-1][:, None]
                fitted[row] = kept_users.sum(0) @ self.inverse
        vectors = self.scale.apply(self.blend.apply(fitted, self._prior(content, mapped)))
        if self.uses_lm:
            for values in evidence:  # every candidate left was asked: its logit as P(Yes)
                values[:, -1] = probability(values[:, -1])
        return WarmedItems(candidates, kept, probabilities, vectors, evidence, tuple(names))

    def _prior(self, content: np.ndarray, mapped: Mapped | None) -> np.ndarray | None:
        """The items' vectors under the content map the blend chose (None: no blend)."""
        if self.blend.weight == 0.0:
            return None
        if self.blend.source == "text2users":
            return mapped.items
        return self.content_maps[self.blend.source](content)

    def _ask_lm(
        self,
        content: np.ndarray,
        texts: Sequence[str],
        candidates: np.ndarray,
        features: np.ndarray,
        lm: Callable[[list[str]], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The screen's best ``lm_candidates`` per item (as an order over ``candidates``)
        and the LM's logit for each.

        The offline cascade, item by item: the LM's cost is per prompt, so it only sees
        the candidates the refiner without it ranks highest.
        """
        screened = self.screen.logits(features)
        order = np.argsort(-screened, axis=1, kind="stable")[:, : self.config.lm_candidates]
        asked = np.take_along_axis(candidates, order, axis=1)
        prompts = [
            self.prompts.prompt_for_new(int(user), texts[row], content[row])
            for row in range(len(asked))
            for user in asked[row]
        ]
        p_yes = np.clip(np.asarray(lm(prompts), dtype=np.float64), 1e-7, 1 - 1e-7)
        return order, (np.log(p_yes) - np.log1p(-p_yes)).reshape(asked.shape)

    def content_vectors(self, content: np.ndarray) -> np.ndarray:
        """Behavioural vectors from content alone (the collaborative subtower's).

        What an item is served with before, or instead of, its simulated interactions: it
        is recommendable the moment it arrives, and stays so when warming fails.
        """
        generated = self.content_maps["collaborative"](np.atleast_2d(content))
        return self.content_scale.apply(generated)

    # -- persistence -------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write ``warmer.pt`` (what warms an item), ``user_tables.pt`` (every user's
        tables) and ``warmer.json`` (settings, readable)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not self.has_tables:
            raise ValueError("a warmer loaded without the users' tables cannot be saved")
        tensors = {
            "content_maps": {
                name: _tensors(content_map.state())
                for name, content_map in self.content_maps.items()
            },
            "refiner": None if self.refiner is None else _tensors(vars(self.refiner)),
            "screen": None if self.screen is None else _tensors(vars(self.screen)),
            "user_tower": None if self.user_tower is None else _tensors(self.user_tower.state()),
            "inverse": torch.from_numpy(self.inverse),
            "moments": _tensors(self.moments.state()),
        }
        torch.save(tensors, folder / WARMER_FILE)
        tables = {
            "signal_users": {name: torch.from_numpy(t) for name, t in self.signal_users.items()},
            "history_indptr": torch.from_numpy(self.history.histories.indptr),
            "history_items": torch.from_numpy(self.history.histories.items),
            "content": torch.from_numpy(np.ascontiguousarray(self.history.content)),
            "users": torch.from_numpy(self.users),
        }
        torch.save(tables, folder / TABLES_FILE)
        manifest = {
            "config": self.config.to_dict(),
            "signals": list(self.signals),
            "weights": self.weights,
            "history_top": self.history.top,
            "ridge": self.ridge,
            "scale": vars(self.scale),
            "content_scale": vars(self.content_scale),
            "refiner_names": None if self.refiner is None else list(self.refiner.names),
            "screen_names": None if self.screen is None else list(self.screen.names),
            "prompts": None if self.prompts is None else _prompt_settings(self.prompts),
            "blend": vars(self.blend),
            "target": self.target,
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        if self.prompts is not None:
            (folder / TEXTS_FILE).write_text(json.dumps(list(self.prompts.texts)))
        if self.text_to_users is not None:
            self.text_to_users.save(folder / TEXT_TO_USERS_DIR)
        return folder

    @classmethod
    def load(cls, folder: str | Path, tables: bool = True) -> ItemWarmer:
        """The warmer saved in ``folder``; ``tables=False`` leaves every user's tables on
        disk (its items' candidates then come from a source), except the histories the
        LM's prompts list, where it asks the LM."""
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        tensors = torch.load(folder / WARMER_FILE, weights_only=True)
        split = (folder / TABLES_FILE).is_file()
        tables = tables or "moments" not in tensors  # saved before: derived from the tables
        needs_tables = tables or bool(manifest.get("prompts"))
        histories = history = saved = None
        if needs_tables:
            saved = torch.load(folder / TABLES_FILE, weights_only=True) if split else tensors
            histories = UserHistories(
                indptr=saved["history_indptr"].numpy(), items=saved["history_items"].numpy()
            )
            content = saved["content"].numpy()
            history = HistorySimilarity(histories, content, manifest["history_top"])
        config = LLMInSConfig.from_dict(manifest["config"])
        prompts = None
        if manifest.get("prompts"):
            texts = json.loads((folder / TEXTS_FILE).read_text())
            prompts = PromptBuilder(
                texts=texts, histories=histories, content=history.content, **manifest["prompts"]
            )
        moments = tensors.get("moments")
        return cls(
            config=config,
            signals=tuple(manifest["signals"]),
            content_maps={
                name: ContentMap.from_state(_numpy_state(state))
                for name, state in tensors["content_maps"].items()
            },
            signal_users=(
                {name: t.numpy() for name, t in saved["signal_users"].items()} if tables else None
            ),
            history=history if tables else None,
            weights=manifest["weights"],
            refiner=_refiner(tensors["refiner"], manifest["refiner_names"]),
            users=saved["users"].numpy() if tables else None,
            ridge=manifest["ridge"],
            scale=ColdScale(**manifest["scale"]),
            content_scale=ColdScale(**manifest["content_scale"]),
            screen=_refiner(tensors.get("screen"), manifest.get("screen_names")),
            prompts=prompts,
            text_to_users=(
                TextToUsers.load(folder / TEXT_TO_USERS_DIR)
                if (folder / TEXT_TO_USERS_DIR).is_dir()
                else None
            ),
            blend=Blend(**manifest.get("blend", {})),
            user_tower=(
                ContentMap.from_state(_numpy_state(tensors["user_tower"]))
                if tensors.get("user_tower") is not None
                else None
            ),
            inverse=_numpy(tensors["inverse"]) if "inverse" in tensors else None,
            moments=None if moments is None else SignalMoments.from_state(_numpy_tree(moments)),
            target=manifest.get("target", "uniform"),
        )


def fit_item_warmer(
    bench: Workbench, config: LLMInSConfig = VARIANTS["llmins-online"]
) -> tuple[ItemWarmer, dict, LMSimulator | None]:
    """Run ``config`` on the bench's cold items and keep what it chose, for new items.

    The validation items choose the merge weights, the refiner (with the LM simulator's
    answer as a feature where ``lm`` is ``always``, or ``auto`` and validation measured a
    gain), the ridge and the length, as in the benchmark. Returns the warmer, the variant's
    record (precision, choices) and the simulator where the warmer asks it (None else).
    """
    if config.lm == "paper" or config.update != "online" or not config.refine:
        raise ValueError("the item warmer runs the refiner and the online update, per item")
    simulation = simulate(bench, config)
    _, info, _ = update_online(bench, config, simulation)
    update_info = info["online_update"]
    if update_info["keep"] is not None:
        config = replace(config, keep=update_info["keep"], keeps=())
    # The collaborative map is kept even when its signal is not: it is the fallback vector.
    content_maps = {"collaborative": bench.collaborative.content_map}
    signal_users = {}
    if "collaborative" in config.signals:
        signal_users["collaborative"] = bench.collaborative.users
    user_tower = None
    if "language" in config.signals:
        content_maps["language"] = bench.language.item_map
        signal_users["language"] = bench.language.users
        user_tower = bench.language.user_map
    blend = Blend(**update_info["blend"])
    if blend.weight and blend.source != "text2users":
        content_maps[blend.source] = bench.prior_map(blend.source)
    text_to_users = None
    if "text2users" in config.signals or (blend.weight and blend.source == "text2users"):
        text_to_users = bench.text_to_users(config.text_encoder)[0]
    if "text2users" in config.signals:
        signal_users["text2users"] = bench.users
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
        text_to_users=text_to_users,
        blend=blend,
        user_tower=user_tower,
        target=update_info["target"],
    )
    simulator = None
    if simulation.screen is not None:
        warmer.screen = simulation.screen
        warmer.prompts = bench.prompt_builder(config.simulator_training.history)
        simulator = bench.simulator(config.simulator_training)
    return warmer, info, simulator


def _refiner(state: dict | None, names: list[str] | None) -> Refiner | None:
    if state is None:
        return None
    return Refiner(**{key: _numpy(value) for key, value in state.items()}, names=tuple(names))


def _prompt_settings(builder: PromptBuilder) -> dict:
    """What rebuilds the prompt builder besides its texts, histories and content."""
    keep = ("item_kind", "history_items", "history", "words_per_title", "seed")
    return {name: getattr(builder, name) for name in keep}


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


def _numpy_tree(state: dict) -> dict:
    """Tensors back to arrays, nested dicts kept."""
    return {
        key: _numpy_tree(value) if isinstance(value, dict) else _numpy(value)
        for key, value in state.items()
    }


def _numpy_state(state: dict) -> dict:
    return {key: value if key == "network" else _numpy(value) for key, value in state.items()}
