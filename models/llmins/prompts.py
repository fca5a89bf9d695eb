"""The simulator's prompts, in the paper's instruction / input / output form (TALLRec style).

The same text is scored by the in-process simulator and sent to the refining service, so
it is built in one place. A prompt lists some of the user's history titles; which ones is
the ``history`` choice: ``similar`` (the user's items most similar to the target, most
similar first: what the late-interaction similarity found informative) or ``random`` (the
paper's random sample).

Item text is untrusted (a seller writes it, and it is shown to the simulator for every
candidate user), so :func:`neutralize` reduces it to words inside its quoted field before
it enters a prompt; ordinary titles pass through unchanged, so tuned adapters stay valid.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.llmins.history import UserHistories, unit_rows

INSTRUCTION = (
    "Given the user's interaction {kind} set, determine whether the user will like the "
    "target {kind} by answering Yes or No."
)
TEMPLATE = "### Instruction:\n{instruction}\n### Input:\n{input}\n### Response:\n"
ANSWERS = ("No", "Yes")


#: Tokenizer control tokens that tokenizers read out of plain text (a title saying "[SEP]"
#: gets MiniLM's real separator): BERT's bracketed ones, SentencePiece's angle-bracketed
#: ones, and the ``<|...|>`` tokens of GPT / Llama-3 / Qwen chat formats.
_CONTROL_TOKEN = re.compile(
    r"\[(?:CLS|SEP|PAD|MASK|UNK)\]|</?(?:s|unk|pad)>|<\|[^|<>]*\|>", re.IGNORECASE
)
#: A section header of :data:`TEMPLATE`: two or more '#' (spaces between them count, as a
#: WordPiece tokenizer reads "# # #" as "###"), with the section word and colon after them
#: if any. One '#' stays ("Spec#", HTML entities such as "&#47;"), and so do the words alone:
#: real titles say "Library Instruction: ...", and without the '#'s they open no section.
_SECTION_HEADER = re.compile(r"#(?:\s*#)+(?:\s*(?:instruction|input|response)\s*:)?", re.IGNORECASE)


def neutralize(text: str) -> str:
    """``text`` as words that cannot leave their quoted field of a prompt.

    In order: whitespace of any kind (newlines included) becomes single spaces; invisible
    characters (Unicode categories Cc and Cf, e.g. zero-width spaces) are dropped, as BERT's
    tokenizer drops them, so they cannot hide a '#' run; double quotes, which would close
    the field, become single quotes; control tokens and section headers become spaces. The
    steps repeat until nothing changes, because removing one pattern can join the pieces of
    another ("#[SEP]#"). Text free of these characters is returned as it was, up to
    whitespace, which :func:`shorten` collapses anyway: all but 76 of CiteULike's 16,980
    titles (58 hold double quotes; 18 invisible mojibake characters, which MiniLM's
    tokenizer drops itself, so their tokens do not change).
    """
    while True:
        cleaned = " ".join(text.split())
        cleaned = "".join(c for c in cleaned if unicodedata.category(c) not in ("Cc", "Cf"))
        cleaned = cleaned.replace('"', "'")
        cleaned = _CONTROL_TOKEN.sub(" ", cleaned)
        cleaned = " ".join(_SECTION_HEADER.sub(" ", cleaned).split())
        if cleaned == text:
            return cleaned
        text = cleaned


#: The target item's text in a prompt, as :meth:`PromptBuilder._compose` writes it: after
#: "target <kind>: ", in double quotes (neutralized texts hold none), up to the closing "?".
_TARGET = re.compile(r'target [^:\n]*: "?(?P<text>[^"\n]*?)"?\?')


def target_span(prompt: str) -> tuple[int, int] | None:
    """Character span of the target item's text in ``prompt`` (its last mention), if any."""
    matches = list(_TARGET.finditer(prompt))
    return matches[-1].span("text") if matches else None


def shorten(text: str, words: int) -> str:
    """The first ``words`` words of a one-line version of ``text``."""
    parts = text.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


@dataclass
class PromptBuilder:
    """Prompts for (user, target item) pairs of one data set.

    Args:
        item_kind: the data set's word for an item ("paper", "movie").
        texts: every item's content, indexed by item id.
        histories: what each user interacted with (warm training interactions).
        content: item content vectors, for choosing the most similar history items.
        history_items: titles listed per prompt.
        history: ``similar`` or ``random``.
        words_per_title: each listed title is cut to this many words (prompt length is
            the simulator's cost).
    """

    item_kind: str
    texts: Sequence[str]
    histories: UserHistories
    content: np.ndarray
    history_items: int = 5
    history: str = "similar"
    words_per_title: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if self.history not in ("similar", "random"):
            raise ValueError(f"history must be 'similar' or 'random', not {self.history!r}")
        self.unit = unit_rows(self.content)
        self.instruction = INSTRUCTION.format(kind=self.item_kind)
        self.rng = np.random.default_rng(self.seed)

    def listed_items(self, user: int, item: int) -> np.ndarray:
        """The history items a prompt for (user, item) lists; never the item itself."""
        if self.history == "similar":
            return self.histories.most_similar(
                user, self.unit[item], self.unit, self.history_items, exclude=item
            )
        history = self.histories.of(user)
        history = history[history != item]
        count = min(self.history_items, len(history))
        return self.rng.choice(history, size=count, replace=False)

    def prompt(self, user: int, item: int) -> str:
        """The instruction and input for one pair; the answer is the next token."""
        return self._compose(self.listed_items(user, item), self.texts[item])

    def prompt_for_new(self, user: int, text: str, vector: np.ndarray) -> str:
        """The prompt for an item that arrived after the builder was made (a posted item).

        ``vector`` is its content vector, which picks the similar history titles.
        """
        if self.history == "similar":
            target = unit_rows(np.atleast_2d(vector))[0]
            listed = self.histories.most_similar(user, target, self.unit, self.history_items)
        else:
            history = self.histories.of(user)
            count = min(self.history_items, len(history))
            listed = self.rng.choice(history, size=count, replace=False)
        return self._compose(listed, text)

    def item_text(self, text: str, words: int) -> str:
        """One item's text as it goes between a prompt's quotes: neutralized, then cut."""
        return shorten(neutralize(text), words)

    def _compose(self, listed: np.ndarray, target_text: str) -> str:
        titles = ", ".join(
            f'"{self.item_text(self.texts[i], self.words_per_title)}"' for i in listed
        )
        target = self.item_text(target_text, 2 * self.words_per_title)
        text = (
            f"User preference: {titles}. Whether the user will like the target "
            f'{self.item_kind}: "{target}"?'
        )
        return TEMPLATE.format(instruction=self.instruction, input=text)

    def prompts(self, users: Sequence[int], items: Sequence[int]) -> list[str]:
        return [self.prompt(int(u), int(i)) for u, i in zip(users, items, strict=True)]


def training_record(prompt_text: str, label: int) -> dict[str, str]:
    """One line of the paper's training file: instruction / input / output."""
    instruction, rest = prompt_text.split("\n### Input:\n", 1)
    return {
        "instruction": instruction.removeprefix("### Instruction:\n"),
        "input": rest.removesuffix("\n### Response:\n"),
        "output": ANSWERS[label],
    }
