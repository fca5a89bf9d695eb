"""How the service is deployed: the compose file (valid, complete, real settings), the README."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

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


def test_the_refining_service_is_wired_where_the_worker_and_bootstrap_expect_it(compose) -> None:
    """The worker's URL names the service and port the refining services listen on, under the
    model name they serve, and both read the adapter where the stores publish it."""
    services = compose["services"]
    environment = services["worker"]["environment"]
    settings = Settings(
        state_dir=environment["LLMINS_STATE_DIR"],
        simulator_url=environment["LLMINS_SIMULATOR_URL"],
    )
    url = urlsplit(settings.simulator_url)
    assert url.path == "/v1"
    adapter = str(settings.adapter_link)
    simulator, vllm = services["simulator"]["command"], services["vllm"]["command"]
    assert "simulator" == url.hostname in vllm_aliases(services["vllm"])
    assert option(simulator, "--port") == option(vllm, "--port") == str(url.port)
    assert option(simulator, "--adapter") == adapter
    assert option(simulator, "--model-name", "simulator") == settings.simulator_model
    assert option(vllm, "--lora-modules") == f"{settings.simulator_model}={adapter}"
    for name in ("worker", "simulator", "vllm"):
        assert mounts(services[name], adapter), name


def option(command: list[str], flag: str, default: str | None = None) -> str | None:
    return command[command.index(flag) + 1] if flag in command else default


def vllm_aliases(service: dict) -> set[str]:
    return set(service["networks"]["default"]["aliases"])


def mounts(service: dict, path: str) -> bool:
    """Whether one of the service's named volumes holds ``path``."""
    targets = [volume.split(":")[1] for volume in service.get("volumes", [])]
    return any(path == target or path.startswith(target.rstrip("/") + "/") for target in targets)


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
    missing = [name for name in Settings.model_fields if f"`LLMINS_{name.upper()}`" not in readme]
    assert not missing
