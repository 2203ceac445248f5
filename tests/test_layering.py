"""The package's import structure: no import cycle between fa_lib modules, and no fa_lib import
hidden inside a function (which is how cycles hide) except where an allow-list entry says why.

Target layering (``A -> B``: B may import A, never the reverse):

    core maths (landmarks, heatmaps, geometry, metrics, atomic, device)
      -> models, data, train
      -> the aligner API (api, inference, detectors, peers, convert_ls3dw, export, evaluate)
      -> reproduction machinery (profiles, experiments, reproduce, results, bookgen, widgets)
      -> cli

(one known exception: the synthetic-data builders read their sizes from ``fa_lib.profiles``, a
module without fa_lib imports). Only the absence of cycles is enforced here.

The graph is built from the source with ``ast`` (module-level ``import`` / ``from ... import``
statements only: not those inside functions or classes' methods, nor ``if TYPE_CHECKING:`` blocks),
so it needs neither the optional dependencies nor an import of the package.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fa_lib"

#: function-level imports of fa_lib modules that are allowed: (importing module, imported module)
#: -> why. Keep it small; a cycle is never a reason (restructure instead). Function-level imports of
#: heavy optional third-party packages (onnx, dlib, mediapipe, seaborn, ...) are not listed: only
#: fa_lib modules count here.
FUNCTION_LEVEL_ALLOWED: dict[tuple[str, str], str] = {
    ("fa_lib.cli", "fa_lib.kernels.bench"): "the compiled XNOR extension is imported only by `fa-lib bench "
                                            "xnor`, so a machine where it did not build keeps every other command",
    ("fa_lib.cli", "fa_lib.kernels.xnor"): "same reason as fa_lib.kernels.bench",
}

#: modules exempt from the allow-list check (none: every fa_lib module is checked)
IN_PROGRESS_PREFIXES: tuple[str, ...] = ()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        base = base[:-(node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.stmt, importer: str, is_package: bool, modules: set[str]) -> list[str]:
    """The fa_lib modules an import statement imports (``from pkg import sub`` names sub)."""
    out = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.name
            while name and name not in modules:  # import fa_lib.a.b (b an attribute): fa_lib.a
                name = name.rpartition(".")[0]
            if name.startswith("fa_lib"):
                out.append(name)
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(node, importer, is_package)
        if not base.startswith("fa_lib"):
            return out
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            out.append(sub if sub in modules else base)
    return [name for name in out if name in modules]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_statements(body):
    """Import statements executed when the module is imported (also inside module-level if/try/with
    blocks; never inside functions, classes' method bodies or ``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _module_level_statements(node.body)
            yield from _module_level_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _module_level_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _module_level_statements(node.body)


def _function_level_statements(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


def parents(name: str) -> list[str]:
    """Importing fa_lib.a.b runs fa_lib/__init__ and fa_lib/a/__init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level import graph, function-level fa_lib imports) of every fa_lib module."""
    modules = all_modules()
    names = set(modules)
    graph: dict[str, set[str]] = {}
    nested: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = set()
        for node in _module_level_statements(tree.body):
            for target in _targets(node, name, is_package, names):
                edges.add(target)
                edges.update(p for p in parents(target) if p in names)
        graph[name] = {e for e in edges if e != name and e not in parents(name)}
        inner = set()
        for node in _function_level_statements(tree):
            inner.update(t for t in _targets(node, name, is_package, names) if t != name)
        nested[name] = inner
    return graph, nested


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_the_graph_builder_sees_imports_and_cycles():
    """The checks below are not vacuous: known edges of every import form are found, and a cycle is."""
    graph, _ = import_graph()
    assert "fa_lib.api" in graph["fa_lib.convert_ls3dw"]                  # from .api import ...
    assert "fa_lib.models.checkpoints" in graph["fa_lib.api"]             # from .models.checkpoints import
    assert {"fa_lib.models", "fa_lib.models.blocks"} <= graph["fa_lib.inference"]  # parent package too
    assert "fa_lib.geometry" in graph["fa_lib.heatmaps"]                  # from . import geometry
    assert "fa_lib.convert_ls3dw" not in graph["fa_lib.api"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("with_function_level", [False, True], ids=["module-level", "with-function-level"])
def test_import_graph_is_acyclic(with_function_level):
    """No cycle between fa_lib modules; counting function-level imports of fa_lib modules too (a
    cycle hidden in a function is still a cycle)."""
    graph, nested = import_graph()
    if with_function_level:
        graph = {k: graph[k] | nested[k] for k in graph}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles between fa_lib modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_function_level_imports_are_allowed():
    _, nested = import_graph()
    unexpected = sorted(f"{importer} -> {target}" for importer, targets in nested.items()
                        for target in targets
                        if (importer, target) not in FUNCTION_LEVEL_ALLOWED
                        and not (IN_PROGRESS_PREFIXES and importer.startswith(IN_PROGRESS_PREFIXES)))
    assert not unexpected, ("function-level imports of fa_lib modules (make them module-level, or "
                            "add them to FUNCTION_LEVEL_ALLOWED with a reason): " + ", ".join(unexpected))


def test_allow_list_is_current():
    _, nested = import_graph()
    stale = sorted(f"{a} -> {b}" for a, b in FUNCTION_LEVEL_ALLOWED if b not in nested.get(a, set()))
    assert not stale, "FUNCTION_LEVEL_ALLOWED entries that no longer exist: " + ", ".join(stale)


def _optional_missing(module: str) -> str | None:
    """Modules that need an optional dependency not installed here are skipped, not failed."""
    needs = {"fa_lib.widgets": "ipywidgets", "fa_lib.reproduce": "papermill"}
    dep = needs.get(module)
    if dep is None:
        return None
    return None if importlib.util.find_spec(dep) else dep


def _import_alone(module: str) -> str | None:
    """Import ``module`` first and alone in a fresh interpreter; the error's last line, or None."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                            cwd=ROOT, timeout=600)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]


@pytest.mark.slow
def test_every_module_imports_alone():
    """Each module imported first, alone, in a fresh interpreter: an import cycle shows up here as
    an ImportError / AttributeError on a partially initialised module (about 1-2 s a module)."""
    modules = [m for m in all_modules() if _optional_missing(m) is None]
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1))) as pool:
        errors = dict(zip(modules, pool.map(_import_alone, modules)))
    failed = [f"{m}: {e}" for m, e in errors.items() if e is not None]
    assert not failed, "modules that cannot be imported alone:\n" + "\n".join(failed)
