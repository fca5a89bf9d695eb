"""The layout shows the roles: no import circle among the service's modules, and serving
processes never load the offline benchmark (nor, through it, the plotting library)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The one service module allowed to import the benchmark, and only inside the ``benchmark``
#: worker command: the brief runs the offline benchmark through a worker command.
BENCHMARK_COMMAND = "services.worker.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere (functions included), except for type checking."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def service_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in (ROOT / "services").rglob("*.py")}
    return {
        name: {target for target in imports(path) if target in modules and target != name}
        for name, path in modules.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_among_the_service_modules() -> None:
    assert find_cycle(service_graph()) is None


def test_only_the_benchmark_command_imports_the_benchmark() -> None:
    importers = sorted(
        module_name(path)
        for path in (ROOT / "services").rglob("*.py")
        if "models.benchmark" in imports(path)
    )
    assert importers == [BENCHMARK_COMMAND]


def test_serving_processes_load_neither_the_benchmark_nor_plotting() -> None:
    entry_points = [
        "services.api.app",
        "services.api.__main__",
        "services.worker.tasks",
        "services.worker.cli",
        "services.simulator.app",
        "services.bootstrap",
        "services.refresh",
    ]
    script = (
        "import importlib, sys\n"
        f"for name in {entry_points!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'models.benchmark' or "
        "m.startswith('matplotlib')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
