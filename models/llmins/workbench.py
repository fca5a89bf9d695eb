"""What every LLM-InS variant of one benchmark seed shares, built lazily (subtowers, signal
matrices, the tuned simulator and its scores), so ablations cost only what differs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property

import numpy as np

from models.baselines import GENERATOR_GRID
from models.baselines.aldi import AldiConfig, fit_aldi
from models.baselines.common import ColdStartEmbeddings, best_on_validation
from models.baselines.deepmusic import fit_deepmusic
from models.baselines.generator import ContentMap, GeneratorConfig
from models.data.dataset import ColdStartDataset
from models.llmins.filtering import (
    choose_weights,
    signal_scores,
    top_users,
)
from models.llmins.history import HistorySimilarity, UserHistories
from models.llmins.prompts import PromptBuilder
from models.llmins.simulator import LMSimulator, SimulatorConfig
from models.llmins.text_to_users import Mapped, TextToUsers, TextToUsersConfig, fit_text_to_users
from models.llmins.towers import LanguageTowers, TowerConfig, fit_language_towers
from models.llmins.variants import LLMInSConfig, SimulatorTraining

#: The collaborative subtower's loss, L_BPR + L_dis + L_ide: ALDI's supervised, rating and
#: identity terms, its ranking term off. Its first fit and a refresh's refit share it.
COLLABORATIVE_TERMS = AldiConfig(alpha=0.0)

logger = logging.getLogger(__name__)

#: The cold items' stages: validation chooses every setting, test reports.
STAGES: tuple[str, ...] = ("val", "test")


class Workbench:
    """Shared, lazily built pieces of LLM-InS for one data set, backbone and seed."""

    def __init__(
        self,
        dataset: ColdStartDataset,
        content: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        seed: int = 0,
        simulator: SimulatorConfig = SimulatorConfig(),
        towers: TowerConfig = TowerConfig(),
        collaborative: Sequence[GeneratorConfig] = GENERATOR_GRID["aldi"],
        deepmusic: Sequence[GeneratorConfig] = GENERATOR_GRID["deepmusic"],
        history_top: int = 3,
        text_to_users: TextToUsersConfig = TextToUsersConfig(),
        encoder_path: str | None = None,
        progress: bool = True,
    ) -> None:
        self.dataset = dataset
        self.content = content
        self.users = users
        self.items = items
        self.seed = seed
        self.simulator_config = replace(simulator, seed=seed)
        self.tower_config = replace(towers, training=replace(towers.training, seed=seed))
        self.collaborative_grid = [replace(generator, seed=seed) for generator in collaborative]
        self.deepmusic_grid = [replace(generator, seed=seed) for generator in deepmusic]
        self.history_top = history_top
        self.text_to_users_config = replace(text_to_users, seed=seed)
        self.encoder_path = encoder_path
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self.histories = UserHistories.from_pairs(dataset.splits["warm_train"], dataset.n_users)
        self._signals: dict[str, dict[str, np.ndarray]] = {}
        self._weights: dict[tuple, tuple[dict, dict]] = {}
        self._simulators: dict[tuple, LMSimulator] = {}
        self._lm_logits: dict[tuple, dict[str, np.ndarray]] = {}
        self._text_to_users: dict[str, tuple[TextToUsers, Mapped]] = {}

    def timed(self, name: str, build: Callable, *args):
        """``build(*args)``, its wall time added to stage ``name``."""
        started = time.perf_counter()
        value = build(*args)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return value

    # -- subtowers ---------------------------------------------------------------------

    @cached_property
    def collaborative(self) -> ColdStartEmbeddings:
        """Content -> behaviour generator: L_BPR + alpha L_dis + beta L_ide (ALDI's terms).

        Its settings are chosen among ``collaborative`` on the data set's cold validation
        items, by the rule the baselines follow.
        """

        def fit(generator: GeneratorConfig) -> ColdStartEmbeddings:
            return fit_aldi(
                self.dataset,
                self.content,
                self.users,
                self.items,
                generator,
                COLLABORATIVE_TERMS,
                self.progress,
            )

        return self.timed(
            "collaborative subtower",
            lambda: best_on_validation(
                "collaborative subtower", self.dataset, self.collaborative_grid, fit
            ),
        )

    @cached_property
    def language(self) -> LanguageTowers:
        return self.timed(
            "language subtower",
            lambda: fit_language_towers(
                self.dataset, self.content, self.histories, self.tower_config, self.progress
            ),
        )

    @cached_property
    def history(self) -> HistorySimilarity:
        return HistorySimilarity(self.histories, self.content, self.history_top)

    def text_to_users(self, encoder: str) -> tuple[TextToUsers, Mapped]:
        """The ``fine-tuned`` or ``frozen`` text-to-users encoder and every item mapped."""
        if encoder not in self._text_to_users:
            config = replace(self.text_to_users_config, finetune=encoder == "fine-tuned")
            self._text_to_users[encoder] = self.timed(
                f"text-to-users ({encoder})",
                lambda: fit_text_to_users(
                    self.dataset,
                    self.content,
                    self.users,
                    self.items,
                    config,
                    self.encoder_path,
                    self.progress,
                ),
            )
        return self._text_to_users[encoder]

    def tables(self, name: str, encoder: str = "fine-tuned") -> tuple[np.ndarray, np.ndarray]:
        """(user, item) tables of a subtower, or of the text-to-users ``encoder``."""
        if name == "text2users":
            return self.users, self.text_to_users(encoder)[1].users
        subtower = self.collaborative if name == "collaborative" else self.language
        return subtower.users, subtower.items

    # -- filtering ---------------------------------------------------------------------

    def stage_items(self, stage: str) -> np.ndarray:
        return self.dataset.cold_items(stage)

    def truth(self, stage: str) -> list[set[int]]:
        """Per cold item of ``stage``, its real held-out users (never shown to the model)."""
        pairs = self.dataset.splits[f"cold_{stage}"]
        items = self.stage_items(stage)
        position = {int(item): row for row, item in enumerate(items)}
        truth: list[set[int]] = [set() for _ in items]
        for user, item in pairs:
            truth[position[int(item)]].add(int(user))
        return truth

    def signals(
        self, stage: str, names: tuple[str, ...], encoder: str = "fine-tuned"
    ) -> dict[str, np.ndarray]:
        """Standardised scores of the stage's cold items, per signal (``encoder``: which
        text-to-users encoder the ``text2users`` signal reads)."""
        cache = self._signals.setdefault(stage, {})
        keys = {name: f"{name}/{encoder}" if name == "text2users" else name for name in names}
        for name, key in keys.items():
            if key in cache:
                continue
            tables = self.tables(name, encoder) if name != "history" else None
            history = self.history if name == "history" else None
            items = self.stage_items(stage)
            cache[key] = self.timed("signals", signal_scores, name, items, tables, history)
        return {name: cache[key] for name, key in keys.items()}

    def weights(
        self, names: tuple[str, ...], keep: int, encoder: str = "fine-tuned"
    ) -> tuple[dict, dict]:
        """Merge weights chosen on validation precision@keep, cached per signal set."""
        key = (names, keep, encoder)
        if key not in self._weights:
            self._weights[key] = choose_weights(
                self.signals("val", names, encoder), self.truth("val"), keep, names
            )
        return self._weights[key]

    @cached_property
    def deepmusic(self) -> ColdStartEmbeddings:
        """DeepMusic's regression of the backbone's item vectors on content, its settings
        chosen among ``deepmusic`` on cold validation items, as the baseline's are (the
        benchmark's ``deepmusic`` row is this one)."""

        def fit(generator: GeneratorConfig) -> ColdStartEmbeddings:
            return fit_deepmusic(
                self.dataset, self.content, self.users, self.items, generator, self.progress
            )

        return self.timed(
            "deepmusic",
            lambda: best_on_validation("deepmusic", self.dataset, self.deepmusic_grid, fit),
        )

    def priors(self, config: LLMInSConfig) -> dict[str, np.ndarray]:
        """Every item's vector under each content map the variant's prior chooses among
        (the maps' own outputs, as the online warm-up computes them for a new item)."""
        return {
            source: self.text_to_users(config.text_encoder)[1].items
            if source == "text2users"
            else self.prior_map(source)(self.content)
            for source in config.priors
        }

    def prior_map(self, source: str) -> ContentMap:
        """The content map a prior other than text-to-users reads (the online warm-up
        carries it)."""
        return {"deepmusic": self.deepmusic}[source].content_map

    # -- simulator ---------------------------------------------------------------------

    def simulator(self, training: SimulatorTraining) -> LMSimulator:
        key = tuple(sorted(training.to_dict().items()))
        if key not in self._simulators:
            self._simulators[key] = self.timed(
                f"simulator tuning ({training.negatives} negatives)",
                lambda: self._tune_simulator(training),
            )
        return self._simulators[key]

    def prompt_builder(self, history: str) -> PromptBuilder:
        return PromptBuilder(
            self.dataset.item_kind,
            self.dataset.item_texts,
            self.histories,
            self.content,
            history=history,
            seed=self.seed,
        )

    def _tune_simulator(self, training: SimulatorTraining) -> LMSimulator:
        prompts, labels = self.training_prompts(training)
        simulator = LMSimulator(self.simulator_config)
        simulator.train(prompts, labels, progress=self.progress)
        simulator.training_info.update(training.to_dict())
        logger.info("simulator tuned: %s", simulator.training_info)
        return simulator

    def training_prompts(self, training: SimulatorTraining) -> tuple[list[str], np.ndarray]:
        """Balanced Yes/No prompts from warm training interactions (never cold items)."""
        rng = np.random.default_rng(self.seed)
        train = self.dataset.splits["warm_train"]
        half = training.examples // 2
        positives = train[rng.choice(len(train), size=half, replace=False)]
        if training.negatives == "random":
            from models.sampling import NegativeSampler

            negatives_items = NegativeSampler(train, self.dataset.n_items).sample(
                positives[:, 0], rng
            )
            negatives = np.stack([positives[:, 0], negatives_items], axis=1)
        else:
            negatives, positives = self._list_examples(training, half, rng)
        builder = self.prompt_builder(training.history)
        pairs = np.concatenate([positives, negatives])
        labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))]).astype(int)
        order = rng.permutation(len(pairs))
        return builder.prompts(pairs[order, 0], pairs[order, 1]), labels[order]

    def _list_examples(
        self, training: SimulatorTraining, half: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positives and negatives from the history-similarity lists of pseudo-cold items.

        A warm item plays a cold one: its own entry is removed from the histories it is
        compared with, its top users are ranked, and they are labelled by whether they
        really interacted with it in training.
        """
        train = self.dataset.splits["warm_train"]
        warm = rng.choice(
            self.dataset.warm_items,
            size=min(training.pseudo_cold_items, len(self.dataset.warm_items)),
            replace=False,
        )
        scores = self.history.scores(warm, exclude_self=True)
        lists = top_users(scores, 100)
        interacted = set(map(tuple, train.tolist()))
        positive_pairs, negative_pairs = [], []
        for row, item in enumerate(warm):
            for user in lists[row]:
                pair = (int(user), int(item))
                (positive_pairs if pair in interacted else negative_pairs).append(pair)
        positives = np.array(positive_pairs, dtype=np.int64).reshape(-1, 2)
        negatives = np.array(negative_pairs, dtype=np.int64).reshape(-1, 2)
        count = min(half, len(positives), len(negatives))
        return (
            negatives[rng.choice(len(negatives), size=count, replace=False)],
            positives[rng.choice(len(positives), size=count, replace=False)],
        )

    def lm_logits(
        self, training: SimulatorTraining, stage: str, rows: np.ndarray, candidates: np.ndarray
    ) -> np.ndarray:
        """The simulator's logits for the users ``candidates[j]`` of item ``rows[j]``.

        ``rows`` index the stage's cold items; scores are cached per (user, item) pair.
        """
        simulator = self.simulator(training)
        items = self.stage_items(stage)
        key = (tuple(sorted(training.to_dict().items())), stage)
        cache = self._lm_logits.setdefault(key, {})
        out = np.zeros((len(rows), candidates.shape[1]), dtype=np.float32)
        todo_users, todo_items, todo_at = [], [], []
        for position, row in enumerate(rows):
            for column, user in enumerate(candidates[position]):
                pair = (int(user), int(items[row]))
                if pair in cache:
                    out[position, column] = cache[pair]
                else:
                    todo_users.append(pair[0])
                    todo_items.append(pair[1])
                    todo_at.append((position, column))
        if todo_users:
            builder = self.prompt_builder(training.history)
            prompts = builder.prompts(todo_users, todo_items)
            logits = self.timed(
                "simulator scoring", lambda: simulator.logits(prompts, self.progress)
            )
            for (position, column), user, item, value in zip(
                todo_at, todo_users, todo_items, logits, strict=True
            ):
                out[position, column] = value
                cache[(user, item)] = float(value)
        return out
