"""PNG figures for the benchmark report: metrics per method, and warm vs cold embeddings.

The projection is the paper's Figure 1a: embedding simulation leaves generated cold vectors
in a region of their own, while simulated interactions put cold items among warm ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no screen is needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_metrics(records: Sequence[dict], path: Path, metric: str = "recall@20") -> Path:
    """Grouped bars: ``metric`` of every method on the overall, cold and warm tasks."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    tasks = ("overall", "cold", "warm")
    width = 0.8 / len(tasks)
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(methods) + 2), 4))
    positions = np.arange(len(methods))
    for offset, task in enumerate(tasks):
        means, errors = [], []
        for method in methods:
            values = [r[task][metric] for r in records if r["method"] == method]
            means.append(np.mean(values))
            errors.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
        axes.bar(positions + offset * width, means, width, yerr=errors, label=task)
    axes.set_xticks(positions + width, methods, rotation=30, ha="right")
    axes.set_ylabel(f"test {metric}")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_projection(
    items: np.ndarray,
    warm: np.ndarray,
    cold: np.ndarray,
    path: Path,
    title: str,
    sample: int = 2000,
    seed: int = 0,
) -> Path:
    """Warm and cold item vectors on the first two principal axes of the warm ones."""
    rng = np.random.default_rng(seed)
    warm = rng.choice(warm, size=min(sample, len(warm)), replace=False)
    cold = rng.choice(cold, size=min(sample, len(cold)), replace=False)
    center = items[warm].mean(0)
    _, _, axes_t = np.linalg.svd(items[warm] - center, full_matrices=False)
    figure, axes = plt.subplots(figsize=(5, 5))
    for ids, label, color in ((warm, "warm", "tab:blue"), (cold, "cold", "tab:red")):
        points = (items[ids] - center) @ axes_t[:2].T
        axes.scatter(points[:, 0], points[:, 1], s=3, alpha=0.4, label=label, color=color)
    axes.set_title(title)
    axes.legend(markerscale=4)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
