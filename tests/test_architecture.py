"""The floor plan holds: no import circles, no private names across modules, one atomic
writer, and serving that does not load training code.

Read from the source (``ast``), so the rules cover every import -- also the ones inside
functions -- and every module, whether a test imports it or not.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("kg", "fusion", "loaders")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
SCRIPTS = {str(p.relative_to(REPO)): p for d in ("tests", "bench") for p in sorted((REPO / d).rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in {**MODULES, **SCRIPTS}.items()}


def imported_modules(name: str, tree: ast.Module) -> set[str]:
    """Project modules ``name`` imports (at any depth of the file)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for a in node.names:  # "from kg import queries" imports the module kg.queries
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else node.module)
    return out & set(MODULES)


def test_no_import_circle():
    graph = {name: imported_modules(name, TREES[name]) for name in MODULES}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, f"{len(cycles)} import circles, e.g.: " + "; ".join(" -> ".join(c) for c in cycles[:3])


def private_names_defined(tree: ast.Module) -> set[str]:
    """Underscore names a module defines: functions, classes, module variables, ``self._x``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_private_name_crosses_modules():
    defined = {name: private_names_defined(tree) for name, tree in TREES.items()}
    owners: dict[str, set[str]] = {}
    for name, names in defined.items():
        for n in names:
            owners.setdefault(n, set()).add(name)
    problems = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                problems += [f"{name}:{node.lineno}: from {node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")]
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                value = node.value
                if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                    continue
                if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
                    continue
                # a private name of the project's, defined in another module and not in this one
                if node.attr in owners and name not in owners[node.attr]:
                    problems.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "private names used across modules:\n" + "\n".join(problems)


def test_the_atomic_write_lives_in_one_place():
    sites = [f"{name}:{node.lineno}" for name, tree in TREES.items() for node in ast.walk(tree)
             if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.replace", "os.rename")]
    assert sites and all(s.startswith("kg.run_dir:") for s in sites), sites


def test_serving_loads_no_training_code():
    code = ("import sys, fusion.engine; "
            "print(sorted(m for m in sys.modules if m.startswith(('kg.train', 'fusion.ranking.train', "
            "'kg.evaluation', 'kg.pipeline', 'fusion.pipeline', 'fusion.text.finetune', "
            "'fusion.ranking.loss_balancing'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
