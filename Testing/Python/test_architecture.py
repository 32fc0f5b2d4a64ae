"""The package's import rule, read from the code's own imports (ast), so it stays true.

Each sub-package may import only the ones listed for it: arrows point one way, toward `core`,
and nothing imports `cli`. Within and across packages there are no import cycles (lazy imports
inside functions count too: a cycle hidden in a function is still a cycle). See
docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB_DIR = Path(__file__).resolve().parents[2] / "AttentionUNetSegment" / "AttentionUNetSegmentLib"
PACKAGE = LIB_DIR.name

#: sub-package -> the sub-packages it may import (besides itself).
ALLOWED = {
    "core": set(),
    "files": {"core"},
    "evaluation": {"core", "files"},
    "phantom": {"core", "files"},
    "reports": {"core", "files", "evaluation", "phantom"},
    "training": {"core", "files", "evaluation", "reports"},
    "scene": {"core", "files"},
    "cli": {"core", "files", "evaluation", "phantom", "reports", "training"},
}
#: Third-party modules a sub-package must never import (the core runs in Slicer and headless).
FORBIDDEN_THIRD_PARTY = {
    "core": {"slicer", "qt", "ctk", "vtk", "matplotlib", "scipy"},
    "files": {"slicer", "qt", "ctk", "vtk", "matplotlib"},
    "scene": {"qt", "ctk"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LIB_DIR.rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(modules of this package, top-level third-party names) imported anywhere in `path`."""
    name = _module_name(path)
    base = name if path.name == "__init__.py" else name.rpartition(".")[0]
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                internal.add(target)
                internal.update(f"{target}.{alias.name}" for alias in node.names)
            else:
                external.add(target.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                (internal if alias.name.split(".")[0] == PACKAGE else external).add(
                    alias.name if alias.name.split(".")[0] == PACKAGE else alias.name.split(".")[0])
    return internal, external


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path)[0] if m in modules and m != name} for name, path in modules.items()}


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_every_subpackage_is_known():
    folders = {p.name for p in LIB_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(ALLOWED), "add the new sub-package to ALLOWED (and docs/architecture.md)"
    loose = sorted(p.name for p in LIB_DIR.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"every module belongs in a sub-package: {loose}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_toward_the_core(package):
    wrong = []
    for module, targets in _graph().items():
        if _subpackage(module) != package:
            continue
        for target in sorted(targets):
            other = _subpackage(target)
            if other not in (None, package) and other not in ALLOWED[package]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(FORBIDDEN_THIRD_PARTY))
def test_runtime_packages_avoid_gui_and_plotting_libraries(package):
    wrong = [f"{name} imports {sorted(_imports(path)[1] & FORBIDDEN_THIRD_PARTY[package])}"
             for name, path in _modules().items()
             if _subpackage(name) == package and _imports(path)[1] & FORBIDDEN_THIRD_PARTY[package]]
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1
                    stack.append(child); on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop(); on_stack.discard(member); component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    # Package __init__ files import nothing of the package, so a module never cycles through one.
    graph = {m: {t for t in targets if not _modules()[t].name == "__init__.py"} for m, targets in _graph().items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
