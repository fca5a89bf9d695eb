"""What every training run shares, the offline benchmark's and a service model version's.

A run trains one backbone on a data set's warm interactions (:func:`train_backbone`, set by
:class:`RunConfig`), times its stages (:class:`StageTimer`) and records the libraries it ran
on (:func:`library_versions`). The benchmark and :mod:`models.llmins.release` both build on
this module, so the service never imports the benchmark (and its plotting) to train.
"""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata

import torch

from models.backbones import BackboneConfig, build_backbone
from models.backbones.base import Backbone as BackboneModel
from models.data.dataset import ColdStartDataset
from models.llmins.simulator import SimulatorConfig
from models.training import TrainConfig, train_bpr, tuned_configs, warm_validator


@dataclass(frozen=True)
class RunConfig:
    """How a run trains its backbone, and which content encoder and LM it reads.

    Attributes:
        backbone: ``mf``, ``lightgcn`` or ``ngcf``.
        backbone_config, train_config: None takes the backbone's tuned settings.
        simulator: the LM simulator's model and LoRA settings (LLM-InS methods).
        encoder_path: local Hugging Face model folder (None: the packaged MiniLM).
        progress: progress bars on long loops.
    """

    backbone: str = "mf"
    backbone_config: BackboneConfig | None = None
    train_config: TrainConfig | None = None
    simulator: SimulatorConfig = SimulatorConfig()
    encoder_path: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        # None means the backbone's tuned settings (models.training.TUNED).
        tuned_backbone, tuned_train = tuned_configs(self.backbone)
        if self.backbone_config is None:
            object.__setattr__(self, "backbone_config", tuned_backbone)
        if self.train_config is None:
            object.__setattr__(self, "train_config", tuned_train)


@dataclass
class Backbone:
    """The trained backbone a full update starts from, and how to train it again."""

    name: str
    model: BackboneModel
    config: BackboneConfig
    train_config: TrainConfig


def train_backbone(
    dataset: ColdStartDataset, config: RunConfig, seed: int
) -> tuple[Backbone, dict]:
    """Backbone on the warm training interactions, early stopping on warm validation NDCG@20."""
    torch.manual_seed(seed)
    train = dataset.splits["warm_train"]
    model = build_backbone(
        config.backbone, dataset.n_users, dataset.n_items, train, config.backbone_config
    )

    train_config = TrainConfig(**{**config.train_config.to_dict(), "seed": seed})
    result = train_bpr(
        model,
        train,
        warm_validator(dataset),
        train_config,
        progress=config.progress,
        description=config.backbone,
    )
    info = {
        "best_epoch": result.best_epoch,
        "best_val_warm_ndcg@20": result.best_score,
        "epochs_run": result.epochs_run,
        "seconds": result.seconds,
    }
    return Backbone(config.backbone, model, config.backbone_config, train_config), info


@dataclass
class StageTimer:
    """Wall seconds of named stages, in the order they ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


def library_versions() -> dict[str, str]:
    """The versions a result was produced with (recorded beside every number)."""
    versions = {"python": platform.python_version()}
    for package in ("llmins", "torch", "transformers", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
