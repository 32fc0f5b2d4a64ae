"""The package's import rule, in one place, and the checker that reads it from the code (ast).

Arrows point one way, toward `core`: each part may import only the parts `ALLOWED` lists for it
(besides itself), never the third-party families `FORBIDDEN` lists, and the parts that Slicer
loads may not pull torch in while they load (`NO_TORCH_AT_LOAD`, followed through every module
they import at load), nor the module file numpy or SimpleITK (`NOT_AT_LOAD`: Slicer imports it at
start-up). Imports under `if TYPE_CHECKING:` never run and do not count as loaded. The module file `AttentionUNetSegment.py` is checked as the part
`MODULE_FILE`. There are no import cycles.

What counts as an import: `import x`, `from x import y` (an edge to the module `x.y` when it is
one, else to the package `x`, i.e. its `__init__.py`), inside functions too, and
`importlib.import_module(...)` / `__import__(...)` with a literal name (relative names resolved
against `__package__` or the given package). A dynamic import whose target cannot be read is
allowed only where nothing is forbidden that it could reach (`DYNAMIC_IMPORTS_ALLOWED`).
docs/architecture.md describes the same rule in words; Testing/Python/test_architecture.py
applies it to the tree and plants each kind of violation to show that it is caught.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

PACKAGE = "AttentionUNetSegmentLib"
MODULE_FILE = "module file"
#: How the module file is named in the import graph (the module Slicer loads).
MODULE_FILE_NAME = "AttentionUNetSegment"

#: part -> the parts it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "files": {"core"},
    "service": {"core", "files"},
    "evaluation": {"core", "files"},
    "phantom": {"core", "files"},
    "reports": {"core", "files", "service", "evaluation", "phantom"},
    "training": {"core", "files", "evaluation", "reports"},
    "scene": {"core", "files", "service"},
    "cli": {"core", "files", "service", "evaluation", "phantom", "reports", "training"},
    MODULE_FILE: {"core", "files", "scene"},
}

#: Third-party families, matched by pattern on the top-level name, so that a spelling the short
#: name misses (`vtkmodules`, `PythonQt`, `qSlicerBaseQTGUIPythonQt`, `MRMLCorePython`) is caught.
FAMILIES: dict[str, re.Pattern] = {
    "qt": re.compile(r"^(qt|PythonQt|PyQt\d|PySide\d|sip|shiboken\d|q[A-Z]\w*)$"),
    "ctk": re.compile(r"^ctk\w*$"),
    "vtk": re.compile(r"^vtk\w*$"),
    "slicer": re.compile(r"^(slicer|mrml|MRML\w*|Slicer\w*)$"),
    "matplotlib": re.compile(r"^(matplotlib|pylab)$"),
    "scipy": re.compile(r"^scipy$"),
    "torch": re.compile(r"^torch\w*$"),
    "numpy": re.compile(r"^numpy$"),
    "SimpleITK": re.compile(r"^SimpleITK$"),
}
_GUI = {"slicer", "qt", "ctk", "vtk"}
#: part -> families it must never import, anywhere (lazily inside functions included).
FORBIDDEN: dict[str, set[str]] = {
    "core": _GUI | {"matplotlib", "scipy"},
    "files": _GUI | {"matplotlib"},
    "service": _GUI | {"matplotlib"},
    "scene": {"qt", "ctk"},
    MODULE_FILE: {"torch"},
}
#: Parts that run inside Slicer's process: loading them (and what they import at load) never
#: loads torch, which stock Slicer does not have.
NO_TORCH_AT_LOAD = {"scene", MODULE_FILE}
#: part -> families that loading it (and what it imports at load) must not load either: Slicer
#: imports the module file at start-up, so numpy and SimpleITK wait until the module is used.
#: (`vtk.util.numpy_support` counts as numpy.)
NOT_AT_LOAD: dict[str, set[str]] = {MODULE_FILE: {"numpy", "SimpleITK"}}
#: Parts whose dynamic imports may name their target at run time (cli loads its optional commands).
DYNAMIC_IMPORTS_ALLOWED = {"cli"}


# --------------------------------------------------------------------------- reading imports


@dataclass
class _Reference:
    """One import statement or call, before it is resolved against the modules that exist."""

    target: str                    # a dotted name; "" for a dynamic import that cannot be read
    names: tuple[str, ...] = ()    # `from target import names`
    at_load: bool = True           # at module level, not inside a function
    line: int = 0


@dataclass
class ModuleImports:
    """What one module imports: of this package (resolved to modules) and third-party names."""

    internal: set[str] = field(default_factory=set)
    internal_at_load: set[str] = field(default_factory=set)
    external: set[str] = field(default_factory=set)
    external_at_load: set[str] = field(default_factory=set)
    unreadable_lines: list[int] = field(default_factory=list)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _absolute(name: str, level: int, package: str) -> str:
    """`from ..x import y` inside `package` -> the absolute name of `..x`."""
    if not level:
        return name
    anchor = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{anchor}.{name}" if name else anchor


def _literal(node: Optional[ast.expr], package: str) -> Optional[str]:
    """A string the checker can read: a constant, or `__package__`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id == "__package__":
        return package
    return None


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module" and isinstance(func.value, ast.Name) and func.value.id == "importlib"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def _dynamic_target(call: ast.Call, package: str) -> str:
    """The module an import_module/__import__ call names, or "" when it cannot be read."""
    name = _literal(call.args[0], package) if call.args else None
    if name is None:
        return ""
    if not name.startswith("."):
        return name
    anchor = call.args[1] if len(call.args) > 1 else next(
        (k.value for k in call.keywords if k.arg == "package"), None)
    base = _literal(anchor, package)
    if base is None:
        return ""
    level = len(name) - len(name.lstrip("."))
    return _absolute(name[level:], level, base)


class _Collector(ast.NodeVisitor):
    def __init__(self, package: str):
        self.package = package
        self.depth = 0          # > 0 inside a function: the import runs when it is called
        self.found: list[_Reference] = []

    def _function(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        """`if TYPE_CHECKING:` imports never run: counted as imports, not as loaded at load."""
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
                (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            self.depth += 1
            for child in node.body:
                self.visit(child)
            self.depth -= 1
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(_Reference(alias.name, (), self.depth == 0, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        target = _absolute(node.module or "", node.level, self.package)
        names = tuple(alias.name for alias in node.names)
        self.found.append(_Reference(target, names, self.depth == 0, node.lineno))

    def visit_Call(self, node: ast.Call) -> None:
        if _is_dynamic_import(node):
            self.found.append(_Reference(_dynamic_target(node, self.package), (), self.depth == 0, node.lineno))
        self.generic_visit(node)


def _references(path: Path, module: str) -> list[_Reference]:
    collector = _Collector(_package_of(module, path.name == "__init__.py"))
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return collector.found


def _resolve(references: list[_Reference], modules: set[str]) -> ModuleImports:
    result = ModuleImports()
    for ref in references:
        if not ref.target:
            result.unreadable_lines.append(ref.line)
            continue
        if ref.target.split(".")[0] != PACKAGE:
            names = {ref.target} | {f"{ref.target}.{name}" for name in ref.names}
            result.external |= names
            if ref.at_load:
                result.external_at_load |= names
            continue
        # `from pkg import name`: the sub-module when `name` is one, else the package itself.
        targets = {f"{ref.target}.{n}" if f"{ref.target}.{n}" in modules else ref.target for n in ref.names}
        targets = {t for t in (targets or {ref.target}) if t in modules}
        result.internal |= targets
        if ref.at_load:
            result.internal_at_load |= targets
    return result


# --------------------------------------------------------------------------- the tree


@dataclass
class Tree:
    """Every module of the package (and the module file), with what it imports."""

    paths: dict[str, Path]
    imports: dict[str, ModuleImports]

    def part(self, module: str) -> Optional[str]:
        if module == MODULE_FILE_NAME:
            return MODULE_FILE
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[0] == PACKAGE else None

    def graph(self) -> dict[str, set[str]]:
        return {name: {t for t in found.internal if t != name} for name, found in self.imports.items()}


def _module_name(lib_dir: Path, path: Path) -> str:
    parts = list(path.relative_to(lib_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def read_tree(lib_dir: Path, module_file: Optional[Path] = None) -> Tree:
    """The package at `lib_dir` (a folder named like PACKAGE) and, if given, the module file."""
    paths = {_module_name(lib_dir, p): p for p in sorted(lib_dir.rglob("*.py")) if "__pycache__" not in p.parts}
    if module_file is not None:
        paths[MODULE_FILE_NAME] = module_file
    modules = set(paths)
    imports = {name: _resolve(_references(path, name), modules) for name, path in paths.items()}
    return Tree(paths, imports)


# --------------------------------------------------------------------------- the rules


def families(names: set[str]) -> set[str]:
    """The third-party families (FAMILIES) that dotted module names belong to."""
    tops = {name.split(".")[0] for name in names}
    return {family for family, pattern in FAMILIES.items() if any(pattern.match(top) for top in tops)}


def arrow_violations(tree: Tree) -> list[str]:
    wrong = []
    for module, found in sorted(tree.imports.items()):
        part = tree.part(module)
        if part not in ALLOWED:
            continue
        for target in sorted(found.internal):
            other = tree.part(target)
            if other not in (None, part) and other not in ALLOWED[part]:
                wrong.append(f"{module} imports {target} ({part} may import only {sorted(ALLOWED[part])})")
    return wrong


def third_party_violations(tree: Tree) -> list[str]:
    wrong = []
    for module, found in sorted(tree.imports.items()):
        banned = families(found.external) & FORBIDDEN.get(tree.part(module), set())
        if banned:
            names = sorted(n for n in found.external if families({n}) & banned)
            wrong.append(f"{module} imports {', '.join(names)} ({', '.join(sorted(banned))} is forbidden there)")
    return wrong


def loaded_with(tree: Tree, module: str) -> set[str]:
    """`module` and every module of the package it imports at load, transitively."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(tree.imports[current].internal_at_load)
    return seen


def torch_at_load_violations(tree: Tree) -> list[str]:
    wrong = []
    for module in sorted(tree.imports):
        if tree.part(module) not in NO_TORCH_AT_LOAD:
            continue
        for loaded in sorted(loaded_with(tree, module)):
            if "torch" in families(tree.imports[loaded].external_at_load):
                via = "" if loaded == module else f" through {loaded}"
                wrong.append(f"{module} loads torch when it is imported{via}")
    return wrong


def slow_start_violations(tree: Tree) -> list[str]:
    wrong = []
    for module in sorted(tree.imports):
        banned = NOT_AT_LOAD.get(tree.part(module) or "", set())
        for loaded in sorted(loaded_with(tree, module)) if banned else []:
            names = tree.imports[loaded].external_at_load
            found = families(names) | ({"numpy"} if any(n.startswith("vtk.util.numpy") for n in names) else set())
            for family in sorted(found & banned):
                via = "" if loaded == module else f" through {loaded}"
                wrong.append(f"{module} loads {family} when it is imported{via} (import it where it is used)")
    return wrong


def dynamic_import_violations(tree: Tree) -> list[str]:
    return [f"{module}:{line}: a dynamic import whose target the checker cannot read"
            for module, found in sorted(tree.imports.items())
            if tree.part(module) not in DYNAMIC_IMPORTS_ALLOWED for line in found.unreadable_lines]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def enter(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)

    for root in graph:
        if root in index:
            continue
        enter(root)
        work = [(root, iter(sorted(graph[root])))]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    enter(child)
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
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_violations(tree: Tree) -> list[str]:
    return ["import cycle: " + " -> ".join(component) for component in cycles(tree.graph())]


def violations(lib_dir: Path, module_file: Optional[Path] = None) -> list[str]:
    """Every breach of the rule in the package at `lib_dir` (and the module file), one line each."""
    tree = read_tree(lib_dir, module_file)
    return (arrow_violations(tree) + third_party_violations(tree) + torch_at_load_violations(tree)
            + slow_start_violations(tree)
            + dynamic_import_violations(tree) + cycle_violations(tree))
