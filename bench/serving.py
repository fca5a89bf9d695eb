"""What the benchmarks that drive the service share: the embedded server as a child process,
the commit measured, and Recall/NDCG of the lists it served."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from models.data import DATASETS
from services.settings import get_settings
from services.simulator.process import free_port

ROOT = Path(__file__).resolve().parents[1]


def data_set_parser(description: str) -> argparse.ArgumentParser:
    """The command line of a benchmark that reads a research data set: ``--dataset`` and
    ``--data-dir``, defaulting to the service's settings (``LLMINS_DATASET``...)."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=DATASETS, default=settings.dataset)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir)
    return parser


def git_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def recall_ndcg(
    ranked: dict[int, list[int]], pairs: np.ndarray, k: int = 20
) -> tuple[float, float]:
    """Mean Recall@k (hits / |truth|) and NDCG@k over the users of ``pairs`` (user, item),
    of the lists ``ranked[user]`` (a user without one counts as no hit), as
    models.evaluation defines them."""
    _, recalls, ndcgs = per_user_recall_ndcg(ranked, pairs, k)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def per_user_recall_ndcg(
    ranked: dict[int, list[int]], pairs: np.ndarray, k: int = 20
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, Recall@k, NDCG@k) per user of ``pairs``, users sorted: what paired
    differences between two rankings of the same users are taken from."""
    truth: dict[int, set[int]] = {}
    for user, item in pairs.tolist():
        truth.setdefault(user, set()).add(item)
    discounts = 1 / np.log2(np.arange(2, k + 2))
    users = np.array(sorted(truth), dtype=np.int64)
    recalls, ndcgs = np.zeros(len(users)), np.zeros(len(users))
    for at, user in enumerate(users.tolist()):
        relevant = truth[user]
        hits = np.array([item in relevant for item in ranked.get(user, [])[:k]], dtype=float)
        recalls[at] = hits.sum() / len(relevant)
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcgs[at] = (hits * discounts[: len(hits)]).sum() / ideal
    return users, recalls, ndcgs


class EmbeddedServer:
    """``with EmbeddedServer(state_dir, log) as base_url:`` runs ``python -m services.api``.

    Bootstraps the state folder on first use (minutes), waits until ``/readyz`` answers,
    and stops the server on exit. Periodic refreshes are off: a benchmark measures one
    model version.
    """

    def __init__(self, state_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.state_dir, self.log, self.env = state_dir, log, env or {}
        self.ready_seconds = 0.0

    def __enter__(self) -> str:
        port = free_port()
        env = {
            **os.environ,
            "LLMINS_STATE_DIR": str(self.state_dir),
            "LLMINS_REFRESH_INTERVAL_S": "0",
            **self.env,
        }
        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        self.ready_seconds = time.perf_counter() - started
        return base

    def cpu_seconds(self) -> float:
        """CPU time the server process has used so far (user + system, Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
