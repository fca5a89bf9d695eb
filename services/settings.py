"""The one settings object of every service and command: environment variables, typed.

Built by a cached function, never at import time, so tests can set variables first. Its
defaults run on a CPU with no servers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read from ``LLMINS_*`` environment variables (e.g. ``LLMINS_DATA_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="LLMINS_", extra="ignore")

    data_dir: Path = Field(
        default=Path("../shared/data"),
        description="Folder holding citeulike-a/, ml-100k/, ml-1m/ (relative to the cwd).",
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "llmins",
        description="Cached content vectors and other derived files.",
    )
    encoder_path: Path | None = Field(
        default=None,
        description="Local Hugging Face model folder for content vectors; None: packaged MiniLM.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")


@lru_cache
def get_settings() -> Settings:
    return Settings()
