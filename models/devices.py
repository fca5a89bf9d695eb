"""Where the language models run: the GPU when the host has one, else the CPU.

The LMs here (content encoder, simulator, text-to-users) are built and initialised on the
CPU and then moved, so a seed gives the same starting weights on every host, and what they
save is read back on a host without a GPU.
"""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """``cuda`` where torch sees a GPU, else ``cpu`` (CPU hosts run exactly as before)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device; None takes :func:`default_device`."""
    return default_device() if device is None else torch.device(device)
