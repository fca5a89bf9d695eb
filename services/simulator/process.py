"""The CPU refining service as a child process: how an embedded service asks its LM over HTTP.

A model version whose warm-up asks the LM is served by ``python -m services.simulator``
(vLLM's completions protocol) wherever no ``LLMINS_SIMULATOR_URL`` names one: the process
that warms items starts it on a loopback port for the version's adapter and stops it when
it closes. So the worker's path is the same in every mode: prompts over HTTP, P(Yes) from
the first token's log-probabilities (:class:`services.simulator.client.SimulatorClient`).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

#: Loading torch, the base model and the adapter; a busy CPU takes tens of seconds.
START_TIMEOUT_S = 300.0


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop a child process: politely (SIGTERM), then for sure (SIGKILL)."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class RefiningProcess:
    """``python -m services.simulator --adapter ADAPTER`` on 127.0.0.1, its output in ``log``.

    Args:
        adapter: the model version's saved adapter (its settings are saved beside it).
        model_name: the ``model`` clients send (``LLMINS_SIMULATOR_MODEL``).
        log: where the child's output goes.
        port: 0 picks a free one.
    """

    def __init__(self, adapter: Path, model_name: str, log: Path, port: int = 0) -> None:
        self.adapter = adapter
        self.model_name = model_name
        self.log = log
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the child and wait until it answers; returns its base URL.

        Raises:
            RuntimeError: it exited or did not answer in time (the log's end says why).
        """
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "services.simulator",
            "--adapter",
            str(self.adapter),
            "--model-name",
            self.model_name,
            "--port",
            str(self.port),
        ]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the refining service exited: {self._log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise RuntimeError(
                    f"the refining service did not answer in {timeout_s:.0f} s: {self._log_tail()}"
                )
            time.sleep(0.2)
        logger.info(
            "refining service for %s started at %s in %.1f s (log: %s)",
            self.adapter,
            self.url,
            time.monotonic() - started,
            self.log,
        )
        return self.url

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

    def _log_tail(self, characters: int = 2000) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return text[-characters:] or "(no output)"
