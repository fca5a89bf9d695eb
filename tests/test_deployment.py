"""How the service is deployed: the compose file (valid, complete, real settings), the README."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"
ROLES = {"api", "worker", "beat", "bootstrap", "simulator", "vllm", "redis", "postgres", "qdrant"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_role_of_the_design_is_there(compose) -> None:
    assert set(compose["services"]) == ROLES


def test_every_llmins_variable_is_a_setting(compose) -> None:
    """A misspelt variable would be silently ignored by the settings object."""
    known = {f"LLMINS_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        variables = {k for k in service.get("environment", {}) if k.startswith("LLMINS_")}
        assert variables <= known, (name, variables - known)
    assert "LLMINS_MODE" in compose["services"]["worker"]["environment"]


def test_the_python_roles_run_modules_that_exist(compose) -> None:
    for name in ("api", "worker", "beat", "bootstrap", "simulator"):
        command = compose["services"][name]["command"]
        flag = "-m" if command[0] == "python" else "-A"  # python -m M / celery -A M
        module = command[command.index(flag) + 1]
        assert importlib.util.find_spec(module) is not None, (name, module)


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose (Debian's 1.29 package) is not installed: `apt-get install "
    "docker-compose` to validate the file offline",
)
def test_docker_compose_validates_the_file() -> None:
    for profile in ("cpu", "gpu", "setup"):
        result = subprocess.run(
            ["docker-compose", "-f", str(COMPOSE), "--profile", profile, "config", "-q"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def test_the_readme_documents_every_setting() -> None:
    readme = (COMPOSE.parent / "README.md").read_text()
    missing = [
        name for name in Settings.model_fields if f"`LLMINS_{name.upper()}`" not in readme
    ]
    assert not missing
