"""The one settings object of every service and command: environment variables, typed.

Built by a cached function, never at import time, so tests can set variables first. Its
defaults run on a CPU with no servers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator
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

    # -- the online service ------------------------------------------------------------
    mode: Literal["embedded", "distributed"] = Field(
        default="embedded",
        description="embedded: one process runs the API, warm-ups and refreshes, with local "
        "Qdrant and SQLite; distributed: the work goes to Celery workers over Redis.",
    )
    # Made absolute: the store records model folders under it, and a relative path would
    # point elsewhere from a process started in another directory.
    state_dir: Annotated[Path, AfterValidator(Path.absolute)] = Field(
        default=Path("state"),
        description="Where the embedded mode keeps its SQLite file, local Qdrant and models.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the relational store; None: SQLite in state_dir.",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL; None: local mode in state_dir/qdrant."
    )
    candidates: Literal["index", "exact"] = Field(
        default="index",
        description="Where a warm-up finds candidate users: index: each filter signal's "
        "best users from Qdrant's user profiles, scored exactly on their union (no worker "
        "holds every user); exact: every user scored in process (the benchmark's path).",
    )
    candidate_depth: int = Field(
        default=2,
        ge=1,
        description="Users each signal shortlists from the index, in multiples of the "
        "filter's candidate count.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker and result backend."
    )
    simulator_base: Path | None = Field(
        default=None,
        description="Local HF model folder (or GGUF file) of the LM simulator `bootstrap` "
        "tunes and keeps where validation measures a gain; None: the warm-up uses no LM "
        "(MiniLM measured none).",
    )
    simulator_url: str | None = Field(
        default=None,
        description="Base URL ('/v1' included) of the refining service (vLLM or "
        "services/simulator) for model versions that use the LM; None: embedded mode starts "
        "services/simulator as a child process (distributed mode needs one).",
    )
    simulator_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Loopback port of the refining service an embedded process starts "
        "(0: a free one); unused when LLMINS_SIMULATOR_URL is set.",
    )
    simulator_model: str = Field(
        default="simulator", description="The `model` name sent to the refining service."
    )
    simulator_timeout_s: float = Field(default=10.0, description="Per refining request.")
    warm_up_retries: int = Field(
        default=8,
        ge=0,
        description="Retries of a failed warm-up (e.g. the refining service is down); the "
        "item is served by its content vector, status degraded, meanwhile.",
    )
    warm_up_backoff_s: float = Field(
        default=2.0,
        gt=0,
        description="First retry delay; it doubles per retry, up to 300 s.",
    )
    task_visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds before Redis hands an unacknowledged task (its worker died) "
        "to another worker; longer than the slowest task.",
    )
    dataset: str = Field(
        default="citeulike",
        description="Data set `bootstrap` loads; `none`: start empty (items and interactions "
        "come by import or over the API; recommendations fall back to popular items until "
        "a model version is trained).",
    )
    train_min_interactions: int = Field(
        default=1000,
        ge=1,
        description="Real interactions the store must hold before a model version is "
        "trained from it (a service started empty; below it, recommendations stay on the "
        "popular fallback).",
    )
    train_min_items: int = Field(
        default=50,
        ge=10,
        description="Items with real interactions the store must hold before a model "
        "version is trained from it (a fifth of them are held out to choose its settings).",
    )
    fallback_window_s: float = Field(
        default=30 * 86400.0,
        gt=0,
        description="Recommendations without a model for the user rank the items with the "
        "most real interactions over this many seconds, then the newest items.",
    )
    backbone: str = Field(
        default="mf", description="Backbone `bootstrap` trains (mf|lightgcn|ngcf)."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, writes and admin endpoints need `X-API-Key` (a SecretStr, so "
        "the settings' repr and logs never show it).",
    )
    protect_reads: bool = Field(
        default=False,
        description="Reads of items, users, recommendations and jobs need `X-API-Key` too "
        "(recommendations reveal what a user interacted with); the probes and metrics stay "
        "open. Needs LLMINS_API_KEY.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="Largest request body the API reads; bigger ones are a 413. 4 MiB holds "
        "the largest valid request (10,000 interactions with 128-character ids).",
    )
    seen_cache_s: float = Field(
        default=300.0,
        ge=0,
        description="How long an API process remembers a user's seen items (left out of "
        "recommendations); its own writes update them at once, another replica's show "
        "within this time; 0: read them on every request.",
    )
    host: str = Field(default="127.0.0.1", description="Address the API binds.")
    port: int = Field(default=8000, description="Port the API binds.")
    refresh_interval_s: float = Field(
        default=6 * 3600.0,
        ge=0,
        description="Period of the backbone refresh (Celery beat, or the embedded server's "
        "timer); 0 turns the periodic refresh off in both modes.",
    )

    refresh_refits_text_to_users: bool = Field(
        default=False,
        description="Whether a refresh also refits the text-to-users heads to the retrained "
        "backbone (judged on items left out of the refit). Off: on MovieLens-100K's cold "
        "validation movies the refitted heads ranked no better than the first version's "
        "(docs/results.md); measure it with bench/refresh_tables.py on your data first.",
    )
    refresh_refits_collaborative_map: bool = Field(
        default=False,
        description="Whether a refresh also trains the collaborative subtower's content map "
        "further against the retrained backbone (judged on items left out of the refit; "
        "the first version's map is kept unless the refit beats it there). Measure it with "
        "bench/refresh_tables.py on your data first.",
    )

    keep_previous_versions: int = Field(
        default=1,
        ge=0,
        description="Inactive model versions whose folders are kept (the newest), for "
        "rollback and audit; older ones are deleted at each switch, so that periodic "
        "refreshes do not fill the disk.",
    )

    @model_validator(mode="after")
    def _reads_need_a_key(self) -> Settings:
        if self.protect_reads and self.api_key is None:
            raise ValueError("LLMINS_PROTECT_READS needs LLMINS_API_KEY: the key reads ask for")
        return self

    def refuse_shared_local_index(self, role: str) -> None:
        """Raise where ``role`` would open the local Qdrant folder beside other processes.

        Local mode allows one process per folder; distributed mode has several (the API,
        workers, prefork children), so it needs a Qdrant server.

        Raises:
            ValueError: the message says what to set.
        """
        if self.qdrant_url is None:
            raise ValueError(
                f"{role} needs a Qdrant server: set LLMINS_QDRANT_URL (local mode, in "
                f"{self.state_dir / 'qdrant'}, allows one process per folder)"
            )

    @property
    def adapter_link(self) -> Path:
        """Where the active version's simulator adapter is published (a link), the path
        the refining service is started with."""
        return self.state_dir / "simulator"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'llmins.sqlite'}"


#: ``LLMINS_DATASET`` of a service that starts empty.
NO_DATASET = "none"


@lru_cache
def get_settings() -> Settings:
    return Settings()
