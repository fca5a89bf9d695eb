"""Text-to-users: the content LM fine-tuned to map an item's text to the users who want it.

The FilterLLM form of the simulator (Liu et al., "Text-To-Distribution LLM for
Billion-Scale Cold-Start Recommendation", arXiv 2502.16924): one LM pass per item instead of
one per (item, user) prompt. The LM's mean-pooled last hidden state goes through a linear
head into the backbone's space; its inner products with the backbone's (frozen) user vectors
are logits of a softmax over every user. Training, on warm items only, maximises the
likelihood of each item's real users under that softmax, plus an alignment term: a second
linear head regresses the item's collaborative vector (FilterLLM aligns its one head; two
heads let the ranking of users and the item vector, the update's prior, each be as good as
the shared LM allows, where one head trades one for the other).

``finetune=False`` trains the head alone on the frozen encoder's vectors: the ``no-ft``
ablation, which says what the fine-tuning itself buys. Early stopping watches, on cold
*validation* items, the sum of the recall of their real users among their top ``k``
predicted users (the filter's use) and the cold NDCG@20 of the aligned vectors (the prior's
use).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from models.data.dataset import ColdStartDataset
from models.data.split import hold_out_items
from models.devices import resolve_device
from models.encoders import default_model_path
from models.evaluation import rank_metrics, validation_ndcg

logger = logging.getLogger(__name__)

HEAD_FILE = "head.pt"
CONFIG_FILE = "text_to_users.json"
ENCODER_DIR = "encoder"


@dataclass(frozen=True)
class TextToUsersConfig:
    """How the text-to-users encoder is trained.

    Attributes:
        finetune: train the LM's weights too (False: the head alone, on frozen vectors).
        train_layers: how many of the LM's top transformer layers train (None: all, the
            embeddings included). The lower ones stay as pretrained, so their output is
            computed once per item and cached (BERT-like models), and a step runs the
            trained layers alone: on a CPU, a few times cheaper than full tuning.
        encoder_lr: AdamW learning rate of the LM's weights.
        head_lr: learning rate of the linear heads and the logit scale.
        align_weight: weight of the alignment term, the item head's squared distance to
            the item's backbone vector relative to the warm vectors' mean squared length
            (scale-free, so one weight suits every backbone and data set).
        batch_size: warm items per step (each with all its training users).
        max_epochs, patience: early stopping on cold validation items.
        k: users per item whose recall of real validation users is watched.
        max_length: tokens per text (titles are short).
        weight_decay: AdamW decay.
        seed: initialisation and batch order.
    """

    finetune: bool = True
    train_layers: int | None = 2
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    align_weight: float = 1.0
    batch_size: int = 64
    max_epochs: int = 8
    patience: int = 2
    k: int = 100
    max_length: int = 48
    weight_decay: float = 0.01
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class TextToUsersModel(nn.Module):
    """LM (mean pooled) -> two linear heads into the backbone's space, a learnt logit scale.

    ``users_head`` ranks users (the softmax), ``items_head`` regresses the item's vector.
    ``encoder`` is None for the frozen variant: its inputs are then precomputed vectors.
    """

    def __init__(self, encoder: nn.Module | None, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.users_head = nn.Linear(in_dim, out_dim)
        self.items_head = nn.Linear(in_dim, out_dim)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(self, inputs: dict[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """``(batch, 2 * out_dim)``: the users head's then the items head's vector, of
        tokenised texts (or of frozen content vectors)."""
        if isinstance(inputs, torch.Tensor):
            return self._heads(inputs)
        hidden = self.encoder(**inputs).last_hidden_state
        return self._heads(_mean_pool(hidden, inputs["attention_mask"]))

    def from_hidden(
        self, upper: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` from hidden states cached below the trained layers (``upper``:
        those layers, :func:`_upper_view`)."""
        states = upper(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state
        return self._heads(_mean_pool(states, attention_mask))

    def _heads(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.users_head(pooled), self.items_head(pooled)], dim=1)


class Mapped(NamedTuple):
    """Items mapped into the backbone's space: ``users`` ranks users (the filter signal),
    ``items`` is an item vector (the update's prior); both ``(n, d)``."""

    users: np.ndarray
    items: np.ndarray


@dataclass
class TextToUsers:
    """A trained text-to-users encoder: texts (or content vectors) -> backbone-space vectors.

    Attributes:
        model: the LM and head (the LM is None when it stayed frozen).
        tokenizer: the LM's tokenizer (None when frozen).
        config: how it was trained.
        info: the training record (loss and validation curve, best epoch, seconds).
    """

    model: TextToUsersModel
    tokenizer: object | None
    config: TextToUsersConfig
    info: dict = field(default_factory=dict)

    @property
    def finetuned(self) -> bool:
        return self.model.encoder is not None

    @property
    def device(self) -> torch.device:
        """Where the model's weights are (where :func:`fit_text_to_users` trained them)."""
        return self.model.log_scale.device

    @torch.inference_mode()
    def vectors(
        self,
        texts: Sequence[str],
        content: np.ndarray | None = None,
        batch_size: int = 128,
        progress: bool = False,
    ) -> Mapped:
        """Both heads' float32 vectors of items with these ``texts``.

        The frozen variant reads ``content`` (the frozen encoder's vectors) instead of texts.
        """
        self.model.eval()
        inputs = torch.from_numpy(self._inputs(texts, content, batch_size, progress))
        return _split(self.model(inputs.to(self.device)).cpu().numpy())

    @torch.inference_mode()
    def _inputs(
        self,
        texts: Sequence[str],
        content: np.ndarray | None,
        batch_size: int = 128,
        progress: bool = False,
    ) -> np.ndarray:
        """What the heads read: the LM's mean-pooled vectors of ``texts``, or, for the
        frozen variant, the ``content`` vectors."""
        if not self.finetuned:
            if content is None:
                raise ValueError("the frozen text-to-users head needs content vectors")
            return np.atleast_2d(content).astype(np.float32)
        encoder = self.model.encoder
        encoder.eval()
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.model.users_head.in_features), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="text-to-users", disable=not progress):
            index = order[start : start + batch_size]
            batch = self._tokenize([texts[i] for i in index])
            hidden = encoder(**batch).last_hidden_state
            out[index] = _mean_pool(hidden, batch["attention_mask"]).cpu().numpy()
        return out

    def refitted(
        self,
        texts: Sequence[str],
        content: np.ndarray,
        pairs: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        holdout: float = 0.1,
        min_held_out: int = 20,
        epochs_unvalidated: int = 5,
        progress: bool = False,
    ) -> TextToUsers:
        """This encoder with its heads trained again against a retrained backbone.

        A refresh retrains the backbone, so the space the heads map into moves: the users
        head would score the new user vectors with weights fitted to the old ones, and the
        items head would put the prior where items used to be. The heads start from theirs
        and learn the real ``pairs`` (rows of ``texts``/``content``) against the new
        ``users`` and ``items``; the LM stays as it is (what it learnt of texts holds, and
        tuning it is the first training's job).

        The heads serve items nobody has interacted with, so early stopping judges them as
        the first fit did, on items they never saw: a random ``holdout`` share of the
        items (at least ``min_held_out``, else ``epochs_unvalidated`` epochs are trained
        on all) is left out of training, and each epoch is scored by the recall of those
        items' users among their top ``k`` plus the NDCG@20 of those items ranked by the
        items head's vectors. The starting heads count as epoch 0, so a refit that does
        not beat them on those items keeps them.
        """
        started = time.perf_counter()
        config, device = self.config, self.device
        torch.manual_seed(config.seed)
        if self.finetuned:
            # Rows without a text (none to pool) learn nothing.
            written = np.array([bool(text) for text in texts])
            pairs = pairs[written[pairs[:, 1]]]
        every = np.unique(pairs[:, 1])
        held_items = hold_out_items(pairs, holdout, min_held_out, config.seed)
        leave_out = np.isin(pairs[:, 1], held_items)
        held_out, pairs = pairs[leave_out], pairs[~leave_out]
        objective = _Objective.of(pairs, users, items, config, device)
        inputs = np.zeros((len(texts), self.model.users_head.in_features), dtype=np.float32)
        if self.finetuned:
            inputs[every] = self._inputs([texts[i] for i in every], None, progress=progress)
        else:
            inputs[every] = self._inputs(texts, content[every])
        inputs = torch.from_numpy(inputs).to(device)
        heads = TextToUsersModel(None, inputs.shape[1], users.shape[1]).to(device)
        heads.load_state_dict(self.heads_state())

        def predict(item_ids: np.ndarray) -> torch.Tensor:
            return heads(inputs[torch.from_numpy(item_ids).to(device)])

        validate = None
        if len(held_items):
            truth = _truth(held_out, held_items)
            recall_name = f"held_out_recall@{config.k}"
            nothing = np.zeros((0, 2), dtype=np.int64)

            @torch.inference_mode()
            def validate() -> dict[str, float]:
                mapped = _split(_in_chunks(predict, held_items))
                table = np.array(items, dtype=np.float32, copy=True)
                table[held_items] = mapped.items
                prior = rank_metrics(users, table, held_items, held_out, nothing)["ndcg@20"]
                return {
                    recall_name: float(
                        np.mean(_recall_at(mapped.users @ users.T, truth, config.k))
                    ),
                    "held_out_prior_ndcg@20": prior,
                }

        lengths = np.array([len(texts[item]) for item in objective.warm])
        curve, best_epoch = _train_heads(
            heads,
            predict,
            objective,
            lengths,
            _optimizer(heads, config),
            validate,
            config,
            config.max_epochs if validate is not None else epochs_unvalidated,
            progress,
        )
        model = TextToUsersModel(self.model.encoder, inputs.shape[1], users.shape[1]).to(device)
        model.load_state_dict(heads.state_dict(), strict=False)
        model.eval()
        record = {
            "best_epoch": best_epoch,
            "start": curve[0],
            "best": curve[best_epoch],
            "epochs_run": curve[-1]["epoch"],
            "warm_items": int(len(objective.warm)),
            "held_out_items": int(len(held_items)),
            "seconds": time.perf_counter() - started,
        }
        return TextToUsers(model, self.tokenizer, config, {**self.info, "refit": record})

    def heads_state(self) -> dict[str, torch.Tensor]:
        """The heads' and the logit scale's weights (the LM's apart)."""
        return {
            name: value
            for name, value in self.model.state_dict().items()
            if not name.startswith("encoder.")
        }

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask of ``texts``, on the model's device."""
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {name: tensor.to(self.device) for name, tensor in batch.items()}

    # -- persistence -------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """The LM in Hugging Face format (``encoder/``), the heads as tensors, a record."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.finetuned:
            self.model.encoder.save_pretrained(folder / ENCODER_DIR)
            self.tokenizer.save_pretrained(folder / ENCODER_DIR)
        # CPU tensors, so a host without a GPU loads heads trained on one.
        heads = {name: value.detach().cpu().clone() for name, value in self.heads_state().items()}
        torch.save(heads, folder / HEAD_FILE)
        record = {"config": self.config.to_dict(), "info": _jsonable(self.info)}
        (folder / CONFIG_FILE).write_text(json.dumps(record, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TextToUsers:
        folder = Path(folder)
        record = json.loads((folder / CONFIG_FILE).read_text())
        config = TextToUsersConfig(**record["config"])
        heads = torch.load(folder / HEAD_FILE, weights_only=True, map_location="cpu")
        encoder, tokenizer = None, None
        if config.finetune:
            encoder, tokenizer = _load_lm(folder / ENCODER_DIR)
        out_dim, in_dim = heads["users_head.weight"].shape
        model = TextToUsersModel(encoder, in_dim, out_dim)
        model.load_state_dict(heads, strict=False)
        model.eval()
        return cls(model, tokenizer, config, record.get("info", {}))


def fit_text_to_users(
    dataset: ColdStartDataset,
    content: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    config: TextToUsersConfig = TextToUsersConfig(),
    encoder_path: str | Path | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> tuple[TextToUsers, Mapped]:
    """Train on the warm items of ``dataset``; return the encoder and every item mapped.

    ``users``/``items`` are the backbone's vectors (the softmax's user table and the
    alignment targets); ``content`` the frozen encoder's vectors (read by the frozen variant,
    and by neither otherwise). The returned ``(n_items, d)`` tables hold the encoder's
    vector for every item, cold ones included (computed from their text alone). It trains
    on ``device`` (None: the GPU if there is one) and the returned encoder stays there;
    what it saves loads on a CPU host.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    encoder, tokenizer = (None, None)
    if config.finetune:
        encoder, tokenizer = _load_lm(encoder_path or default_model_path())
        _freeze_below(encoder, config.train_layers)
        in_dim = int(encoder.config.hidden_size)
    else:
        in_dim = content.shape[1]
    # Initialised on the CPU, then moved: a seed gives the same heads on every device.
    model = TextToUsersModel(encoder, in_dim, users.shape[1]).to(device)
    trained = TextToUsers(model, tokenizer, config)
    objective = _Objective.of(dataset.splits["warm_train"], users, items, config, device)
    texts = dataset.item_texts
    frozen_inputs = torch.from_numpy(np.ascontiguousarray(content, dtype=np.float32)).to(device)

    val_items = dataset.cold_items("val")
    cache = None
    if config.finetune:
        cache = _LayerCache.build(trained, texts, np.union1d(objective.warm, val_items))

    def predict(item_ids: np.ndarray) -> torch.Tensor:
        if cache is not None:
            return model.from_hidden(cache.upper, *cache.batch(item_ids))
        if config.finetune:
            return model(trained._tokenize([texts[i] for i in item_ids]))
        return model(frozen_inputs[torch.from_numpy(item_ids).to(device)])

    optimizer = _optimizer(model, config)
    val_truth = _truth(dataset.splits["cold_val"], val_items)
    recall_name = f"val_recall@{config.k}"

    @torch.inference_mode()
    def validate() -> dict[str, float]:
        mapped = _split(_in_chunks(predict, val_items))
        table = items.copy()
        table[val_items] = mapped.items
        return {
            recall_name: float(np.mean(_recall_at(mapped.users @ users.T, val_truth, config.k))),
            "val_cold_ndcg@20": validation_ndcg(dataset, users, table, "cold"),
        }

    lengths = np.array([len(texts[item]) for item in objective.warm])
    curve, best_epoch = _train_heads(
        model, predict, objective, lengths, optimizer, validate, config, config.max_epochs, progress
    )
    trained.info = {
        "best_epoch": best_epoch,
        **{
            f"best_{name}": value
            for name, value in curve[best_epoch].items()
            if name.startswith("val")
        },
        "epochs_run": curve[-1]["epoch"],
        "curve": curve,
        "warm_items": int(len(objective.warm)),
        "seconds": time.perf_counter() - started,
    }
    if cache is None:
        return trained, trained.vectors(texts, content, progress=progress)
    # Items whose lower states are cached need the trained layers alone; the rest (the
    # cold test items) go through the whole encoder, which gives the same function.
    with torch.inference_mode():
        cached = np.array(sorted(cache.states))
        both = np.zeros((dataset.n_items, 2 * users.shape[1]), dtype=np.float32)
        for start in range(0, len(cached), 256):
            both[cached[start : start + 256]] = predict(cached[start : start + 256]).cpu().numpy()
        rest = np.setdiff1d(np.arange(dataset.n_items), cached)
        if len(rest):
            mapped = trained.vectors([texts[i] for i in rest], progress=progress)
            both[rest] = np.concatenate(mapped, axis=1)
    return trained, _split(both)


@dataclass
class _Objective:
    """What the heads learn on warm items: each item's real users, under a softmax over
    the backbone's ``users``, and the item's own backbone vector (the alignment term,
    relative to the warm vectors' mean squared length)."""

    users: torch.Tensor
    items: torch.Tensor
    warm: np.ndarray
    by_item: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    mean_square: float
    align_weight: float

    @classmethod
    def of(
        cls,
        pairs: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        config: TextToUsersConfig,
        device: torch.device,
    ) -> _Objective:
        """From real (user, item) ``pairs``: their items are the warm items."""
        warm = np.unique(pairs[:, 1])
        # Each warm item's users, as a dense 0/1 row built per batch from CSR.
        order = np.argsort(pairs[:, 1], kind="stable")
        by_item = pairs[order]
        targets = torch.from_numpy(np.ascontiguousarray(items, dtype=np.float32)).to(device)
        return cls(
            users=torch.from_numpy(np.ascontiguousarray(users, dtype=np.float32)).to(device),
            items=targets,
            warm=warm,
            by_item=by_item,
            starts=np.searchsorted(by_item[:, 1], warm),
            ends=np.searchsorted(by_item[:, 1], warm, side="right"),
            mean_square=float((targets[torch.from_numpy(warm).to(device)] ** 2).sum(1).mean()),
            align_weight=config.align_weight,
        )

    def users_of(self, position: int) -> np.ndarray:
        """The users of the warm item at ``position`` of :attr:`warm`."""
        return self.by_item[self.starts[position] : self.ends[position], 0]

    def losses(
        self, model: TextToUsersModel, predicted: torch.Tensor, batch: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax and alignment losses of the warm items at positions ``batch``."""
        width = self.users.shape[1]
        ranking, aligned = predicted[:, :width], predicted[:, width:]
        logits = ranking @ self.users.T * model.log_scale.exp()
        # Filled on the CPU (one small write per item), then moved in one copy.
        positives = torch.zeros(logits.shape, dtype=logits.dtype)
        for row, position in enumerate(batch):
            positives[row, self.users_of(position)] = 1.0
        positives = positives.to(logits.device)
        log_p = F.log_softmax(logits, dim=1)
        softmax_loss = -((log_p * positives).sum(1) / positives.sum(1)).mean()
        target = self.items[torch.from_numpy(self.warm[batch]).to(logits.device)]
        align = ((aligned - target) ** 2).sum(1).mean() / self.mean_square
        return softmax_loss, align


def _train_heads(
    model: TextToUsersModel,
    predict: Callable[[np.ndarray], torch.Tensor],
    objective: _Objective,
    lengths: np.ndarray,
    optimizer: torch.optim.Optimizer,
    validate: Callable[[], dict[str, float]] | None,
    config: TextToUsersConfig,
    max_epochs: int,
    progress: bool,
) -> tuple[list[dict], int]:
    """Train with early stopping on the sum of ``validate``'s scores (the untrained start,
    epoch 0, included), and load the best epoch's weights; returns the curve and that
    epoch. Without ``validate``, ``max_epochs`` epochs are trained and the last is kept.
    """
    rng = np.random.default_rng(config.seed)

    def scored() -> dict[str, float]:
        model.eval()
        return validate() if validate is not None else {}

    scores = scored()
    curve: list[dict] = [{"epoch": 0, **scores}]
    best = {"score": sum(scores.values()), "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    stale = 0
    bar = tqdm(range(1, max_epochs + 1), desc="text-to-users", disable=not progress)
    for epoch in bar:
        model.train()
        losses = []
        for batch in _length_batches(lengths, config.batch_size, rng):
            softmax_loss, align = objective.losses(model, predict(objective.warm[batch]), batch)
            loss = softmax_loss + objective.align_weight * align
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append((softmax_loss.item(), align.item()))
        scores = scored()
        softmax_mean, align_mean = np.mean(losses, axis=0)
        curve.append(
            {
                "epoch": epoch,
                "train_softmax": float(softmax_mean),
                "train_align": float(align_mean),
                **scores,
            }
        )
        bar.set_postfix(loss=f"{softmax_mean:.3f}", **{k: f"{v:.4f}" for k, v in scores.items()})
        logger.info(
            "text-to-users epoch %d: softmax %.4f, align %.4f%s",
            epoch,
            softmax_mean,
            align_mean,
            "".join(f", {name} {value:.4f}" for name, value in scores.items()),
        )
        if validate is None or sum(scores.values()) > best["score"]:
            best = {
                "score": sum(scores.values()),
                "epoch": epoch,
                "state": copy.deepcopy(model.state_dict()),
            }
            stale = 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best["state"])
    model.eval()
    return curve, best["epoch"]


def _optimizer(model: TextToUsersModel, config: TextToUsersConfig) -> torch.optim.Optimizer:
    """AdamW over the heads, the logit scale (no decay) and the LM's trainable weights."""
    heads = [*model.users_head.parameters(), *model.items_head.parameters()]
    groups = [
        {"params": heads, "lr": config.head_lr},
        {"params": [model.log_scale], "lr": config.head_lr, "weight_decay": 0.0},
    ]
    if model.encoder is not None:
        trainable = [p for p in model.encoder.parameters() if p.requires_grad]
        groups.append({"params": trainable, "lr": config.encoder_lr})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _in_chunks(
    predict: Callable[[np.ndarray], torch.Tensor], items: np.ndarray, size: int = 256
) -> np.ndarray:
    """``predict`` over (non-empty) ``items`` a chunk at a time, as one float32 array."""
    chunks = [predict(items[i : i + size]) for i in range(0, len(items), size)]
    return torch.cat(chunks).cpu().numpy()


class _Passthrough(nn.Module):
    """Stands in for the embeddings: the cached hidden states go in as they are."""

    def forward(self, inputs_embeds: torch.Tensor | None = None, **_) -> torch.Tensor:
        return inputs_embeds


def _upper_view(encoder: nn.Module, train_layers: int) -> nn.Module | None:
    """The encoder's top ``train_layers`` layers as a model of their own (None where the
    model is not BERT-like), sharing the encoder's parameters: fed the hidden states that
    enter those layers, it returns what the whole encoder returns."""
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    if stack is None or not hasattr(encoder, "embeddings") or not train_layers:
        return None
    upper = _with_layers(encoder, slice(len(stack) - train_layers, None))
    upper._modules["embeddings"] = _Passthrough()
    return upper


def _with_layers(encoder: nn.Module, layers: slice) -> nn.Module:
    """A shallow copy of a BERT-like ``encoder`` that runs only ``layers`` of its stack
    (the same parameter objects: training one trains the other)."""
    inner = copy.copy(encoder.encoder)
    inner._modules = dict(encoder.encoder._modules)
    inner._modules["layer"] = nn.ModuleList(list(encoder.encoder.layer)[layers])
    view = copy.copy(encoder)
    view._modules = dict(encoder._modules)
    view._modules["encoder"] = inner
    return view


@dataclass
class _LayerCache:
    """Per item, the hidden states entering the first trained layer (computed once)."""

    upper: nn.Module
    states: dict[int, torch.Tensor]

    @classmethod
    @torch.inference_mode()
    def build(
        cls, trained: TextToUsers, texts: Sequence[str], items: np.ndarray, batch_size: int = 256
    ) -> _LayerCache | None:
        """None where the encoder is not BERT-like, or the cached path does not reproduce
        the encoder's own output (then training runs the whole encoder)."""
        encoder, layers = trained.model.encoder, trained.config.train_layers
        upper = _upper_view(encoder, layers) if layers else None
        if upper is None:
            return None
        encoder.eval()
        depth = len(encoder.encoder.layer) - layers
        lower = _with_layers(encoder, slice(0, depth))
        states: dict[int, torch.Tensor] = {}
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = trained._tokenize([texts[i] for i in chunk])
            hidden = lower(**batch).last_hidden_state
            for row, item in enumerate(chunk):
                length = int(batch["attention_mask"][row].sum())
                states[int(item)] = hidden[row, :length].clone()
        cache = cls(upper, states)
        probe = items[:8]
        expected = encoder(**trained._tokenize([texts[i] for i in probe])).last_hidden_state
        hidden, attention_mask = cache.batch(probe)
        got = upper(inputs_embeds=hidden, attention_mask=attention_mask)
        mask = attention_mask.unsqueeze(-1).bool()
        width = mask.shape[1]
        if not torch.allclose(
            got.last_hidden_state.masked_fill(~mask, 0),
            expected[:, :width].masked_fill(~mask, 0),
            atol=1e-4,
        ):
            logger.warning("cached layers do not reproduce the encoder: training it whole")
            return None
        logger.info("text-to-users: %d items' states cached below layer %d", len(states), depth)
        return cache

    def batch(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, tokens, hidden)`` padded states and the ``(batch, tokens)`` mask."""
        tensors = [self.states[int(item)] for item in items]
        hidden = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
        mask = torch.zeros(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        for row, tensor in enumerate(tensors):
            mask[row, : len(tensor)] = 1
        return hidden, mask


def _split(both: np.ndarray) -> Mapped:
    half = both.shape[1] // 2
    return Mapped(both[:, :half], both[:, half:])


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def _load_lm(path: str | Path) -> tuple[nn.Module, object]:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModel.from_pretrained(path, local_files_only=True), tokenizer


def _length_batches(
    lengths: np.ndarray, size: int, rng: np.random.Generator, pool: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of positions whose texts have similar lengths (little padding).

    Positions are shuffled, cut into pools of ``pool`` batches, sorted by length within a
    pool and batched; the batches' order is shuffled again.
    """
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), size * pool):
        chunk = order[start : start + size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _freeze_below(encoder: nn.Module, train_layers: int | None) -> None:
    """Freeze everything but the top ``train_layers`` transformer layers (None: nothing).

    Finds the layer stack as BERT-like (``encoder.layer``) and Llama-like (``layers``)
    models name it; a model with neither trains whole.
    """
    if train_layers is None:
        return
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)
    stack = stack if stack is not None else getattr(encoder, "layers", None)
    if stack is None:
        logger.warning("no layer stack found in %s: training every layer", type(encoder).__name__)
        return
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    for layer in list(stack)[len(stack) - train_layers :] if train_layers else []:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)


def _truth(pairs: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
    """Per item of ``items``, its users in ``pairs``."""
    position = {int(item): row for row, item in enumerate(items)}
    truth: list[list[int]] = [[] for _ in items]
    for user, item in pairs:
        truth[position[int(item)]].append(int(user))
    return [np.array(users, dtype=np.int64) for users in truth]


def _recall_at(scores: np.ndarray, truth: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Per row, the share of its true users among its ``k`` best-scored users."""
    top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
    return np.array(
        [np.isin(users, top[row]).mean() if len(users) else 0.0 for row, users in enumerate(truth)]
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
