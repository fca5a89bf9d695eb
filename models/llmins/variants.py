"""The LLM-InS variants: one :class:`LLMInSConfig` per method name the benchmark runs
(:data:`VARIANTS`), and how the simulator's training prompts are made."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from models.llmins.filtering import SIGNALS
from models.llmins.update import PRIORS, TARGETS

#: Simulated users per item tried on validation (the update keeps the best count): items
#: of different data sets have from a handful to hundreds of real users. Longer lists
#: (``k_filter`` 200, counts up to 200) scored worse on CiteULike's validation: the filter's
#: weights and the refiner, fitted for the longer list, rank its head worse.
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
        k_filter: candidate users per cold item after filtering (the longest kept count
            the update may choose).
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
        update: ``full`` (retrain the backbone on warm ∪ simulated; where the retrained
            tables serve validation worse than the online ones, those stay) or ``online``.
        text_encoder: ``fine-tuned`` or ``frozen`` text-to-users encoder, for the
            ``text2users`` signal and the prior.
        priors: the content maps (of :data:`models.llmins.update.PRIORS`) that compete,
            on validation, as the prior each cold row is blended with (the weight is
            chosen too; 0 leaves the fitted vector alone; empty: no blend).
        targets: what the online update may score each kept user in its ridge fit (of
            :data:`models.llmins.update.TARGETS`: 1, or the refiner's probability), chosen
            on validation.
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
    priors: tuple[str, ...] = PRIORS
    targets: tuple[str, ...] = TARGETS
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
        if set(self.priors) - set(PRIORS):
            raise ValueError(f"priors must be a subset of {PRIORS}")
        if set(self.targets) - set(TARGETS) or not self.targets:
            raise ValueError(f"targets must be a non-empty subset of {TARGETS}")
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
        return "text2users" in self.signals or "text2users" in self.priors

    @classmethod
    def from_dict(cls, record: dict) -> LLMInSConfig:
        """The inverse of :meth:`to_dict` (JSON turns tuples into lists). A record
        written before the prior was chosen among content maps (``prior``: a flag) had
        the text-to-users prior alone; one written before kept users could be scored by
        confidence scored them 1."""
        record = dict(record)
        if "prior" in record:
            record["priors"] = ("text2users",) if record.pop("prior") else ()
        return cls(
            **{
                **record,
                "signals": tuple(record["signals"]),
                "priors": tuple(record.get("priors", ())),
                "targets": tuple(record.get("targets", ("uniform",))),
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
    "knn": LLMInSConfig(signals=("history",), refine=False, lm="never", update="online", priors=()),
    "filterllm": LLMInSConfig(
        signals=("text2users",), refine=False, lm="never", update="online", priors=()
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
        priors=(),
        simulator_training=SimulatorTraining(negatives="random", history="random"),
    ),
    "random": LLMInSConfig(
        candidates="random", refine=False, lm="never", update="online", priors=()
    ),
    "random+refine": LLMInSConfig(candidates="random", lm="never", update="online", priors=()),
    "no-cs": LLMInSConfig(signals=_without("collaborative"), lm="never", update="online"),
    "no-ls": LLMInSConfig(signals=_without("language", "history"), lm="never", update="online"),
    "no-t2u": LLMInSConfig(
        signals=_without("text2users"), lm="never", update="online", priors=("deepmusic",)
    ),
    "no-prior": LLMInSConfig(lm="never", update="online", priors=()),
    "no-refine": LLMInSConfig(refine=False, lm="never", update="online"),
    "no-lm": LLMInSConfig(lm="never", update="online"),
}
