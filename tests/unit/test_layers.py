"""The layers import downward only (flows -> infra -> stroppy_domain; blocks stand alone), no module imports itself
in a circle, and every module stays small enough to read in one sitting."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stroppy_domain", "infra", "flows", "blocks")
MAY_IMPORT = {
    "stroppy_domain": {"stroppy_domain"},
    "blocks": {"blocks"},
    "infra": {"infra", "stroppy_domain", "blocks"},
    "flows": {"flows", "infra", "stroppy_domain", "blocks"},
}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def module_level_imports(path: Path) -> set[str]:
    """What a module imports when it loads (including under TYPE_CHECKING), not what its functions import later."""
    found: set[str] = set()
    nodes = list(ast.parse(path.read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.If):
            nodes += node.body + node.orelse
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in found if name in MODULES}


GRAPH = {name: module_level_imports(path) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_own_layer_and_those_below(name: str) -> None:
    layer = name.split(".", maxsplit=1)[0]
    wrong = sorted(other for other in GRAPH[name] if other.split(".")[0] not in MAY_IMPORT[layer])
    assert wrong == [], f"{name} ({layer}) may import only {sorted(MAY_IMPORT[layer])}"


def test_no_modules_import_each_other_in_a_circle() -> None:
    try:
        tuple(TopologicalSorter(GRAPH).static_order())
    except CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_stays_under_the_size_limit(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines"


def test_the_checker_sees_a_circle_when_there_is_one() -> None:
    """The circle services.py and placement.py once made, put back into the real graph."""
    assert "stroppy_domain.services" in GRAPH["stroppy_domain.placement"]
    with pytest.raises(CycleError):
        tuple(TopologicalSorter(GRAPH | {"stroppy_domain.services": {"stroppy_domain.placement"}}).static_order())
