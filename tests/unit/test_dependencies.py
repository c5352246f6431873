"""The arrows between packages point one way (docs/architecture.md, "Dependencies between packages"):

    deployments → actors → storage → domain,   ticketing.settings a leaf anyone may read,
    ticketing (CLI, local system) → storage,

with no cycle between modules, and no deployment module importing another one that is a Serve deployment.
Every import counts, also those inside functions. Read from the source: nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("domain", "storage", "actors", "deployments", "ticketing")
SETTINGS = "ticketing.settings"

# What each layer may import besides itself.
ALLOWED = {
    "domain": set(),
    "storage": {"domain"},
    "actors": {"storage", "domain", SETTINGS},
    "deployments": {"actors", "storage", "domain", SETTINGS},
    SETTINGS: set(),
    "ticketing": {"storage", "domain", SETTINGS},  # the CLI starts deployments by name, never imports them
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> set[str]:
    """The project modules `module` imports (a `from package import module` names the module)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in submodules if n in MODULES]
            if len(names) < len(submodules):  # something defined in the package itself
                names.append(node.module)
        out |= {n for n in names if n in MODULES and n != module}
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> str:
    return SETTINGS if module == SETTINGS else module.split(".")[0]


def test_every_arrow_points_down():
    wrong = sorted(
        (m, t) for m, targets in GRAPH.items() for t in targets
        if _layer(t) != _layer(m) and _layer(t) not in ALLOWED[_layer(m)]
    )
    assert wrong == []


def test_settings_is_a_leaf():
    assert GRAPH[SETTINGS] == set()


def test_no_module_cycle():
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH[module]):
            if target == module.rsplit(".", 1)[0]:  # a package's __init__ is not a dependency of its modules
                continue
            assert seen.get(target) != 1, " → ".join(path + [target])
            if target not in seen:
                visit(target, path + [target])
        seen[module] = 2

    for module in sorted(GRAPH):
        if module not in seen:
            visit(module, [module])


def test_no_deployment_imports_another_deployment():
    serve_deployments = {m for m, p in MODULES.items()
                         if m.startswith("deployments.") and "@serve.deployment" in p.read_text()}
    assert serve_deployments  # the check reads the decorators it means to find
    wrong = sorted((m, t) for m, targets in GRAPH.items() if m.startswith("deployments.") and m != "deployments.app"
                   for t in targets & serve_deployments)
    assert wrong == []  # only deployments.app, which assembles the applications, imports them
