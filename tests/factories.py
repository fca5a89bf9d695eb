"""Test factories in one place: small data sets, content vectors and trained backbones."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import torch

from models.backbones import BackboneConfig, build_backbone
from models.data.dataset import ColdStartDataset
from models.data.synthetic import TOPIC_WORDS, make_synthetic
from models.training import TrainConfig, train_bpr, warm_validator


@cache
def planted_dataset(seed: int = 1) -> ColdStartDataset:
    """150 users, 200 items in 8 topics: sharp enough preferences for a test to assert on."""
    return make_synthetic(n_users=150, n_items=200, n_topics=8, interactions_per_user=30, seed=seed)


def bag_of_words(texts) -> np.ndarray:
    """Word counts over the synthetic vocabulary: content vectors with no model to load."""
    vocabulary = {word: i for i, word in enumerate(w for topic in TOPIC_WORDS for w in topic)}
    vectors = np.zeros((len(texts), len(vocabulary)), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.split():
            vectors[row, vocabulary[word]] += 1.0
    return vectors


@cache
def trained_mf(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """User and item embeddings of an MF trained on :func:`planted_dataset`."""
    data = planted_dataset(seed)
    torch.manual_seed(0)
    model = build_backbone(
        "mf", data.n_users, data.n_items, data.splits["warm_train"], BackboneConfig(dim=32)
    )

    train_bpr(
        model,
        data.splits["warm_train"],
        warm_validator(data),
        TrainConfig(lr=1e-2, batch_size=256, max_epochs=40, eval_every=2, patience=5),
        progress=False,
    )
    return model.export_embeddings()


def small_workbench(**options):
    """A LLM-InS workbench on :func:`planted_dataset` with small, fast subtowers."""
    from dataclasses import replace

    from models.baselines.generator import GeneratorConfig
    from models.llmins.text_to_users import TextToUsersConfig
    from models.llmins.towers import TowerConfig
    from models.llmins.workbench import Workbench

    data = planted_dataset()
    users, items = trained_mf()
    small = GeneratorConfig(hidden=32, batch_size=128, max_epochs=15, patience=3)
    return Workbench(
        data,
        bag_of_words(data.item_texts),
        users,
        items,
        towers=TowerConfig(dim=16, training=small),
        collaborative=(small, replace(small, dropout=0.5)),
        text_to_users=TextToUsersConfig(batch_size=32, max_epochs=4, k=30),
        progress=False,
        **options,
    )


def kept_per_item(version_path: str | Path) -> int:
    """Simulated users per item of the model version in ``version_path``: the count its
    validation items chose (README: the default warm-up keeps that many per item)."""
    manifest = json.loads((Path(version_path) / "manifest.json").read_text())
    return int(manifest["warmer"]["online_update"]["keep"])


def install_lm_version(runtime, content: np.ndarray | None = None) -> str:
    """Install a version on :func:`planted_dataset` whose warm-up asks the LM simulator
    (lm=always, a small MiniLM adapter): the path that depends on the refining service.

    ``content``: the item vectors (default word counts; a state a worker process will use
    needs the packaged encoder's, which that process embeds with).
    """
    from dataclasses import replace

    from models.llmins.release import NO_LM
    from models.llmins.simulator import SimulatorConfig
    from models.llmins.variants import SimulatorTraining
    from services.bootstrap import install

    data = planted_dataset()
    warmer = replace(
        NO_LM,
        lm="always",
        lm_items=6,
        lm_candidates=20,
        simulator_training=SimulatorTraining(examples=32),
    )
    small = SimulatorConfig(batch_size=8, max_length=64, score_batch_size=32)
    if content is None:
        content = bag_of_words(data.item_texts)
    return install(runtime, data, content, 10, False, warmer, small)


class SimulatorServer:
    """``services.simulator``'s app for a release's adapter, on a loopback port, in a thread.

    The fault tests set :attr:`delay_s` to make it slow, and start it late (or stop it) to
    make it unreachable; the port stays the same, as a restarted service's would.
    """

    def __init__(self, release, port: int | None = None) -> None:
        from models.llmins.simulator import LMSimulator, SimulatorConfig
        from services.simulator.app import create_app
        from services.simulator.process import free_port

        self.port = port or free_port()
        self.delay_s = 0.0
        config = SimulatorConfig(**release.manifest["warmer"]["simulator"])
        simulator = LMSimulator(config, adapter_path=release.manifest["simulator_path"])
        self.app = create_app(simulator, "simulator", "all-MiniLM-L6-v2")
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _delayed(self, scope, receive, send) -> None:
        import asyncio

        if scope["type"] == "http" and self.delay_s:
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)

    def start(self) -> SimulatorServer:
        import threading
        import time

        import uvicorn

        config = uvicorn.Config(
            self._delayed, port=self.port, log_level="warning", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the simulator server did not start on {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None


class LocalSimulator:
    """The refining client's ``p_yes`` over an in-process simulator, through the same
    formula: what the HTTP path must equal, and the offline warmer's tests' simulator.

    Calls take turns, as on the server: the simulator is not thread-safe.
    """

    def __init__(self, simulator) -> None:
        self.simulator = simulator
        import threading

        self._lock = threading.Lock()

    def p_yes(self, prompts) -> np.ndarray:
        """P(Yes) per prompt, in the order given."""
        from services.simulator.client import TOP_LOGPROBS, p_yes_from_top_logprobs

        with self._lock:
            tops = self.simulator.first_token_logprobs(prompts, TOP_LOGPROBS)
        return np.array([p_yes_from_top_logprobs(top) for top in tops], dtype=np.float64)


def prompts_scored(url: str) -> float:
    """The refining service's own count of the prompts it scored (its ``/metrics``), at
    the base URL ``url`` (``.../v1``)."""
    import httpx

    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("llmins_simulator_prompts_total "):
            return float(line.split()[1])
    raise AssertionError(f"no prompt counter at {url}/metrics")
