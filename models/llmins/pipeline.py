"""LLM-InS end to end on a data set: filter, refine, simulate, update.

:class:`Workbench` holds what every LLM-InS variant of one benchmark seed shares (subtowers,
signal matrices, the tuned simulator and its scores), built lazily, so ablations cost only
what differs. :func:`simulate` runs one variant (an :class:`LLMInSConfig`) and returns the
simulated interactions with the measurements the report shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property

import numpy as np

from models.baselines import GENERATOR_GRID
from models.baselines.aldi import AldiConfig, fit_aldi
from models.baselines.common import ColdStartEmbeddings, best_on_validation, choose_cold_scale
from models.baselines.generator import GeneratorConfig
from models.data.dataset import ColdStartDataset
from models.llmins.filtering import (
    SIGNALS,
    choose_weights,
    merge,
    signal_scores,
    top_users,
)
from models.llmins.history import HistorySimilarity, UserHistories
from models.llmins.prompts import PromptBuilder
from models.llmins.refine import (
    Refiner,
    candidate_features,
    feature_names,
    fit_refiner,
    paired_difference,
    per_item_auc,
    per_item_precision,
    select,
)
from models.llmins.simulator import LMSimulator, SimulatorConfig
from models.llmins.text_to_users import Mapped, TextToUsers, TextToUsersConfig, fit_text_to_users
from models.llmins.towers import LanguageTowers, TowerConfig, fit_language_towers
from models.llmins.update import kept_pairs, online_update, retrain_backbone
from models.runs import Backbone

logger = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("val", "test")

#: Simulated users per item tried on validation (the update keeps the best count): items
#: of different data sets have from a handful to hundreds of real users.
KEEP_GRID: tuple[int, ...] = (5, 10, 15, 25, 40, 60, 100)

#: The text-to-users encoder a variant reads: the LM fine-tuned end to end, or its head
#: alone over the frozen LM's vectors (the ``no-ft`` ablation).
TEXT_ENCODERS: tuple[str, ...] = ("fine-tuned", "frozen")


@dataclass(frozen=True)
class SimulatorTraining:
    """How the simulator's training prompts are made.

    Attributes:
        examples: labelled prompts (half Yes, half No). The default is the budget at which
            the MiniLM simulator learned on CiteULike's validation items (docs/results.md,
            "The LM simulator: does it learn?"); 2,000 prompts left it at ln 2.
        negatives: ``random`` draws No examples from items the user never interacted with
            (the paper's, and the task the default budget learns); ``lists`` from the filter
            lists of warm items playing cold ones (what the simulator meets in use).
        history: ``similar`` or ``random`` history titles in each prompt.
        pseudo_cold_items: warm items whose lists are built for ``lists``.
    """

    examples: int = 6000
    negatives: str = "random"
    history: str = "similar"
    pseudo_cold_items: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LLMInSConfig:
    """One LLM-InS variant.

    Attributes:
        k_filter: candidate users per cold item after filtering.
        keep: simulated users kept per item (None: every candidate above ``threshold``,
            or, with ``keeps``, the count validation chooses).
        keeps: counts of simulated users per item the update tries on validation when
            ``keep`` is None (counts above ``k_filter`` become ``k_filter``).
        threshold: minimum refiner probability to keep a candidate (None: no minimum).
        signals: filter signals allowed (their weights are chosen on validation).
        candidates: ``filter`` or ``random`` (the ablation).
        refine: False keeps the filter's own top ``keep``.
        lm: ``auto`` uses the simulator's score where validation measured a gain, ``always``
            or ``never``. In ``paper`` mode the simulator alone decides, P(Yes) >= threshold.
        update: ``full`` (retrain the backbone on warm ∪ simulated) or ``online``.
        text_encoder: ``fine-tuned`` or ``frozen`` text-to-users encoder, for the
            ``text2users`` signal and the prior.
        prior: blend each cold row with its text-to-users vector, the weight chosen on
            validation (0 leaves the fitted vector alone).
        update_lr_factor: the full update's learning rate as a share of the backbone's. It
            continues from trained parameters, so a fresh Adam at full rate only shakes them
            (MF on CiteULike kept its starting point); validation chose 1/30 of 1, 1/10, 1/30
            (overall val NDCG@20 0.2200, 0.2215, 0.2217).
        lm_items: cold items per stage scored by the simulator when its gain is measured.
        lm_candidates: how many of each list's best candidates (by the refiner without the
            simulator) the simulator scores, when measured and when used.
    """

    k_filter: int = 100
    keep: int | None = None
    keeps: tuple[int, ...] = KEEP_GRID
    threshold: float | None = None
    signals: tuple[str, ...] = SIGNALS
    candidates: str = "filter"
    refine: bool = True
    lm: str = "auto"
    update: str = "full"
    text_encoder: str = "fine-tuned"
    prior: bool = True
    update_lr_factor: float = 1 / 30
    lm_items: int = 150
    lm_candidates: int = 30
    simulator_training: SimulatorTraining = SimulatorTraining()

    def __post_init__(self) -> None:
        if self.candidates not in ("filter", "random"):
            raise ValueError("candidates must be 'filter' or 'random'")
        if self.lm not in ("auto", "always", "never", "paper"):
            raise ValueError("lm must be 'auto', 'always', 'never' or 'paper'")
        if self.update not in ("full", "online"):
            raise ValueError("update must be 'full' or 'online'")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}")
        if self.keep is None and not self.keeps and self.threshold is None:
            raise ValueError("give keep, keeps or threshold")
        unknown = set(self.signals) - set(SIGNALS)
        if unknown or not self.signals:
            raise ValueError(f"signals must be a non-empty subset of {SIGNALS}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def keep_choices(self) -> tuple[int, ...]:
        """The counts the update chooses from (empty: ``keep`` is fixed, or a threshold)."""
        if self.keep is not None:
            return ()
        return tuple(sorted({min(keep, self.k_filter) for keep in self.keeps}))

    @property
    def most_kept(self) -> int | None:
        """The largest number of users an item keeps before the update's choice."""
        return max(self.keep_choices) if self.keep_choices else self.keep

    @property
    def uses_text_to_users(self) -> bool:
        return "text2users" in self.signals or self.prior

    @classmethod
    def from_dict(cls, record: dict) -> LLMInSConfig:
        """The inverse of :meth:`to_dict` (JSON turns tuples into lists)."""
        return cls(
            **{
                **record,
                "signals": tuple(record["signals"]),
                "keeps": tuple(record.get("keeps", ())),
                "simulator_training": SimulatorTraining(**record["simulator_training"]),
            }
        )


def _without(*names: str) -> tuple[str, ...]:
    return tuple(name for name in SIGNALS if name not in names)


#: The variants the benchmark runs, by method name. Each ablation differs from
#: ``llmins-online`` in one setting: the online update makes a row cost seconds instead of a
#: backbone retraining, so every row can run on every seed. The refining ablations leave the
#: simulator out: on CiteULike it measured no gain for ``llmins`` (docs/results.md), and each
#: measurement costs thousands of CPU prompts. ``filterllm`` is the text-to-users encoder
#: alone (its top users, no refiner, no prior); ``no-ft`` is ``llmins`` on the frozen LM.
VARIANTS: dict[str, LLMInSConfig] = {
    "knn": LLMInSConfig(
        signals=("history",), refine=False, lm="never", update="online", prior=False
    ),
    "filterllm": LLMInSConfig(
        signals=("text2users",), refine=False, lm="never", update="online", prior=False
    ),
    "llmins": LLMInSConfig(),
    "no-ft": LLMInSConfig(text_encoder="frozen"),
    "llmins-online": LLMInSConfig(update="online"),
    "llmins-paper": LLMInSConfig(
        k_filter=20,
        keep=None,
        keeps=(),
        threshold=0.5,
        signals=("collaborative", "language"),
        lm="paper",
        prior=False,
        simulator_training=SimulatorTraining(negatives="random", history="random"),
    ),
    "random": LLMInSConfig(
        candidates="random", refine=False, lm="never", update="online", prior=False
    ),
    "random+refine": LLMInSConfig(candidates="random", lm="never", update="online", prior=False),
    "no-cs": LLMInSConfig(signals=_without("collaborative"), lm="never", update="online"),
    "no-ls": LLMInSConfig(signals=_without("language", "history"), lm="never", update="online"),
    "no-t2u": LLMInSConfig(
        signals=_without("text2users"), lm="never", update="online", prior=False
    ),
    "no-prior": LLMInSConfig(lm="never", update="online", prior=False),
    "no-refine": LLMInSConfig(refine=False, lm="never", update="online"),
    "no-lm": LLMInSConfig(lm="never", update="online"),
}


@dataclass
class Simulation:
    """Simulated (user, item) pairs of every cold item, and what was measured on the way."""

    pairs: np.ndarray
    info: dict = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    refiner: Refiner | None = None
    #: When the simulator was used: the refiner without it, which picks what it scores.
    screen: Refiner | None = None
    #: Per pair, its rank in its item's kept list (0: best): the update keeps a prefix.
    ranks: np.ndarray | None = None


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
                AldiConfig(alpha=0.0),
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

    def prior(self, config: LLMInSConfig) -> np.ndarray | None:
        """The text-to-users vectors a variant blends its cold rows with (None: no prior)."""
        return self.text_to_users(config.text_encoder)[1].items if config.prior else None

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


def simulate(bench: Workbench, config: LLMInSConfig) -> Simulation:
    """Simulated interactions of every cold item (validation and test) for one variant."""
    rng = np.random.default_rng(bench.seed)
    info: dict = {"config": config.to_dict()}
    weights: dict[str, float] = {}
    if config.candidates == "filter":
        weights, tried = bench.weights(
            config.signals, config.keep or config.k_filter, config.text_encoder
        )
        info["filter_weights"] = weights
        info["filter_weights_tried"] = tried
        if "collaborative" in config.signals:
            chosen = bench.collaborative.info
            info["collaborative_subtower"] = {"chosen": chosen["generator"], "grid": chosen["grid"]}
    lists: dict[str, dict] = {}
    for stage in STAGES:
        items = bench.stage_items(stage)
        signals = bench.signals(stage, config.signals, config.text_encoder)
        if config.candidates == "random":
            candidates = np.stack(
                [rng.choice(bench.dataset.n_users, config.k_filter, replace=False) for _ in items]
            )
            merged = np.zeros((len(items), bench.dataset.n_users), dtype=np.float32)
        else:
            merged = merge(signals, weights)
            candidates = top_users(merged, config.k_filter)
        features = candidate_features(
            signals, config.signals, merged, candidates, np.log1p(bench.histories.lengths())
        )
        truth = bench.truth(stage)
        labels = np.array([[u in truth[r] for u in candidates[r]] for r in range(len(items))])
        lists[stage] = {
            "items": items,
            "candidates": candidates,
            "features": features,
            "labels": labels.astype(np.int8),
        }
    names = feature_names(config.signals)
    for stage in STAGES:
        info[f"{stage}_candidate_precision"] = float(lists[stage]["labels"].mean())
    kept, refiner, screen = _refine(bench, config, lists, names, info)
    # A count past the lists' length (the LM's cascade shortens them) keeps them whole.
    width = min(data["candidates"].shape[1] for data in lists.values())
    info["keep_choices"] = sorted({min(keep, width) for keep in config.keep_choices})
    pairs, ranks = [], []
    for stage in STAGES:
        mask, data = kept[stage], lists[stage]
        # Rank of each kept candidate among its item's kept ones, by the refiner's score
        # (the filter's order without a refiner).
        order_scores = data.get("scores", -np.arange(mask.shape[1], dtype=np.float64)[None, :])
        ranked = np.where(mask, np.broadcast_to(order_scores, mask.shape), -np.inf)
        rank = np.argsort(np.argsort(-ranked, axis=1, kind="stable"), axis=1, kind="stable")
        rows, columns = np.nonzero(mask)
        pairs.append(np.stack([data["candidates"][rows, columns], data["items"][rows]], axis=1))
        ranks.append(rank[rows, columns])
        for keep in info["keep_choices"] or (None,):
            chosen = mask if keep is None else mask & (rank < keep)
            selected = data["labels"][chosen]
            suffix = "" if keep is None else f"@{keep}"
            info[f"{stage}_precision{suffix}"] = float(selected.mean()) if selected.size else 0.0
            info[f"{stage}_adoption{suffix}"] = float(chosen.mean())
            info[f"{stage}_pairs_per_item{suffix}"] = float(chosen.sum(1).mean())
    return Simulation(
        np.concatenate(pairs).astype(np.int64),
        info,
        weights,
        refiner,
        screen,
        ranks=np.concatenate(ranks).astype(np.int64),
    )


def _refine(
    bench: Workbench,
    config: LLMInSConfig,
    lists: dict[str, dict],
    names: list[str],
    info: dict,
) -> tuple[dict[str, np.ndarray], Refiner | None, Refiner | None]:
    """Kept-candidate masks per stage, the refiner that chose them (None: no refiner) and,
    when the simulator was used, the refiner without it that chose what it scored.

    The refiner's measurements are added to ``info``.
    """
    if not config.refine:
        # The filter's own order: its first ``most_kept`` candidates.
        masks = {
            stage: np.arange(config.k_filter)[None, :].repeat(len(data["items"]), 0)
            < (config.most_kept or config.k_filter)
            for stage, data in lists.items()
        }
        return masks, None, None
    if config.lm == "paper":
        return _paper_refine(bench, config, lists, info), None, None
    refiner = _cross_fitted(lists, names, info, "refiner (no LM)")
    use_lm = config.lm == "always"
    if config.lm in ("auto", "always"):
        use_lm = _measure_lm(bench, config, lists, names, refiner, info) or use_lm
    info["lm_used"] = use_lm
    screen = None
    if use_lm:
        screen = refiner
        # A cascade: the simulator scores each list's best lm_candidates by the refiner
        # without it (its cost is per prompt), and the refiner with it re-ranks those.
        training = config.simulator_training
        for stage, data in lists.items():
            order = np.argsort(-data["scores"], axis=1, kind="stable")[:, : config.lm_candidates]
            for key in ("candidates", "labels"):
                data[key] = np.take_along_axis(data[key], order, axis=1)
            data["features"] = np.take_along_axis(data["features"], order[..., None], axis=1)
            logits = bench.lm_logits(
                training, stage, np.arange(len(data["items"])), data["candidates"]
            )
            data["features"] = np.concatenate([data["features"], logits[..., None]], axis=-1)
        names = [*names, "lm"]
        refiner = _cross_fitted(lists, names, info, "refiner (with LM)")
    scores = {stage: data["scores"] for stage, data in lists.items()}
    for stage, data in lists.items():
        info[f"{stage}_refiner_auc"] = float(
            np.nanmean(per_item_auc(scores[stage], data["labels"]))
        )
        merged = data["features"][..., len(config.signals) + 1]
        info[f"{stage}_filter_auc"] = float(np.nanmean(per_item_auc(merged, data["labels"])))
    info["refiner_weights"] = refiner.describe()
    masks = {stage: select(scores[stage], config.most_kept, config.threshold) for stage in lists}
    return masks, refiner, screen


def _cross_fitted(lists: dict[str, dict], names: list[str], info: dict, label: str) -> Refiner:
    """Fit the refiner on validation lists; score validation out of fold, test with all.

    Validation items' kept users feed the update's early stopping, so each half of them is
    scored by a refiner fitted on the other half: no label chooses its own item's users.
    """
    val = lists["val"]
    halves = np.arange(len(val["items"])) % 2
    val["scores"] = np.zeros(val["labels"].shape, dtype=np.float64)
    for half in (0, 1):
        fit = halves != half
        refiner = fit_refiner(val["features"][fit], val["labels"][fit], names)
        val["scores"][halves == half] = refiner.logits(val["features"][halves == half])
    refiner = fit_refiner(val["features"], val["labels"], names)
    lists["test"]["scores"] = refiner.logits(lists["test"]["features"])
    info[f"{label} weights"] = refiner.describe()
    return refiner


def _lm_sample(bench: Workbench, count: int, n_items: int, stage: str) -> np.ndarray:
    rng = np.random.default_rng(bench.seed + (0 if stage == "val" else 1))
    return np.sort(rng.choice(n_items, size=min(count, n_items), replace=False))


def _measure_lm(
    bench: Workbench,
    config: LLMInSConfig,
    lists: dict[str, dict],
    names: list[str],
    refiner: Refiner,
    info: dict,
) -> bool:
    """Does the simulator's logit rank candidates better than the refiner without it?

    On a sample of items per stage, within the refiner's best ``lm_candidates`` of each list,
    compare per-item AUC and precision@keep of: the refiner without the LM, the LM alone, and
    the refiner refitted with the LM as a feature (fitted on the validation sample,
    out of fold there). Returns whether validation showed a gain beyond two standard errors.
    """
    training = config.simulator_training
    measured: dict[str, dict] = {}
    features_by_stage = {}
    for stage, data in lists.items():
        rows = _lm_sample(bench, config.lm_items, len(data["items"]), stage)
        order = np.argsort(-data["scores"][rows], axis=1, kind="stable")[:, : config.lm_candidates]
        candidates = np.take_along_axis(data["candidates"][rows], order, axis=1)
        logits = bench.lm_logits(training, stage, rows, candidates)
        features = np.take_along_axis(data["features"][rows], order[..., None], axis=1)
        features_by_stage[stage] = (
            np.concatenate([features, logits[..., None]], axis=-1),
            np.take_along_axis(data["labels"][rows], order, axis=1),
            np.take_along_axis(data["scores"][rows], order, axis=1),
        )
    val_features, val_labels, _ = features_by_stage["val"]
    with_lm_names = [*names, "lm"]
    halves = np.arange(len(val_labels)) % 2
    for stage, (features, labels, without) in features_by_stage.items():
        if stage == "val":
            with_lm = np.zeros(labels.shape)
            for half in (0, 1):
                fitted = fit_refiner(
                    val_features[halves != half], val_labels[halves != half], with_lm_names
                )
                with_lm[halves == half] = fitted.logits(val_features[halves == half])
        else:
            fitted = fit_refiner(val_features, val_labels, with_lm_names)
            with_lm = fitted.logits(features)
            info["refiner_with_lm_weights"] = fitted.describe()
        lm_alone = features[..., -1]
        keep = config.keep or 20
        auc = {
            "without_lm": per_item_auc(without, labels),
            "with_lm": per_item_auc(with_lm, labels),
            "lm_alone": per_item_auc(lm_alone, labels),
        }
        precision = {
            name: per_item_precision(score, labels, keep)
            for name, score in (
                ("without_lm", without),
                ("with_lm", with_lm),
                ("lm_alone", lm_alone),
            )
        }
        measured[stage] = {
            "items": int(len(labels)),
            "candidates_per_item": int(labels.shape[1]),
            "auc": {name: float(np.nanmean(value)) for name, value in auc.items()},
            f"precision@{keep}": {name: float(value.mean()) for name, value in precision.items()},
            "auc_gain": paired_difference(auc["with_lm"], auc["without_lm"]),
            "precision_gain": paired_difference(precision["with_lm"], precision["without_lm"]),
        }
    info["lm_measurement"] = measured
    info["simulator"] = bench.simulator(training).training_info
    gain = measured["val"]["precision_gain"]
    return bool(gain["mean"] > 2 * gain["se"])


def _paper_refine(
    bench: Workbench, config: LLMInSConfig, lists: dict[str, dict], info: dict
) -> dict[str, np.ndarray]:
    """The paper's refining: every candidate the simulator answers Yes for is kept."""
    training = config.simulator_training
    kept = {}
    for stage, data in lists.items():
        logits = bench.lm_logits(training, stage, np.arange(len(data["items"])), data["candidates"])
        kept[stage] = select(logits.astype(np.float64), config.keep, config.threshold)
        info[f"{stage}_simulator_auc"] = float(np.nanmean(per_item_auc(logits, data["labels"])))
    info["simulator"] = bench.simulator(training).training_info
    return kept


def update_online(
    bench: Workbench, config: LLMInSConfig, simulation: Simulation
) -> tuple[np.ndarray, dict, np.ndarray]:
    """The online update of a simulation: item table, record, and the pairs it kept.

    Validation chooses how many of each item's ranked users to keep (``config.keeps``), the
    ridge, the blend with the text-to-users prior and the rows' length; the record's
    precision, adoption and pairs per item are those of the chosen count.
    """
    table, update_info = online_update(
        bench.dataset,
        bench.users,
        bench.items,
        simulation.pairs,
        ranks=simulation.ranks,
        keeps=simulation.info["keep_choices"],
        prior=bench.prior(config),
    )
    info = {**simulation.info, "online_update": update_info}
    if config.uses_text_to_users:
        # The encoder's training record: its loss and validation curve, best epoch, time.
        info["text_to_users"] = bench.text_to_users(config.text_encoder)[0].info
    keep = update_info["keep"]
    if keep is not None:
        for stage in STAGES:
            for measure in ("precision", "adoption", "pairs_per_item"):
                info[f"{stage}_{measure}"] = info[f"{stage}_{measure}@{keep}"]
    return table, info, kept_pairs(simulation.pairs, simulation.ranks, keep)


def warm_up(
    bench: Workbench, config: LLMInSConfig, backbone: Backbone | None
) -> ColdStartEmbeddings:
    """Simulate interactions for every cold item, then update: embeddings for evaluation.

    ``backbone`` is needed by the full update only (None suits ``update="online"``).
    """
    before = dict(bench.seconds)
    started = time.perf_counter()
    simulation = simulate(bench, config)
    simulate_seconds = time.perf_counter() - started
    dataset = bench.dataset
    started = time.perf_counter()
    online, info, pairs = update_online(bench, config, simulation)
    seconds = {"simulate": simulate_seconds, "online update": time.perf_counter() - started}
    users, items = bench.users, online
    if config.update == "full":
        if backbone is None:
            raise ValueError("the full update retrains a backbone: pass the trained one")
        started = time.perf_counter()
        model, result = retrain_backbone(
            dataset,
            backbone.name,
            backbone.model,
            pairs,
            online,
            backbone.config,
            replace(
                backbone.train_config,
                seed=bench.seed,
                lr=backbone.train_config.lr * config.update_lr_factor,
            ),
            bench.progress,
        )
        users, items = model.export_embeddings()
        items, scale = choose_cold_scale(dataset, users, items)
        info["full_update_scale"] = scale
        seconds["full update"] = time.perf_counter() - started
        info["full_update"] = {
            "best_epoch": result.best_epoch,
            "best_val_overall_ndcg@20": result.best_score,
            "epochs_run": result.epochs_run,
        }
    # Shared pieces this variant built first (subtowers, simulator) count towards it.
    built = {k: v - before.get(k, 0.0) for k, v in bench.seconds.items()}
    info["seconds"] = {**{k: v for k, v in built.items() if v > 0}, **seconds}
    info["simulated_pairs"] = int(len(pairs))
    return ColdStartEmbeddings(users, items, info)
