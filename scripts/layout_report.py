"""Figures of the code's layout: modules per folder, the longest modules and functions, imports inside
functions, import cycles between modules, and imports that run up the layers.

    python scripts/layout_report.py            # from the repository root

The layers, bottom up, are those of the README's "Code layout" section (:data:`LAYERS`); a module may
import from its own layer and those below. The package roots (``deftx/__init__.py``, ``deftx_cli``)
only re-export and are not counted as arrows.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("deftx", "deftx_cli")

# Bottom up; a module's layer is the first prefix that matches its dotted name.
LAYERS = [
    ("shared ground", ("deftx.errors", "deftx.version", "deftx.config", "deftx.signals", "deftx.model")),
    ("records", ("deftx.records",)),
    ("sparse method core", ("deftx.method", "deftx.sft")),
    ("data and objectives", ("deftx.data", "deftx.objectives")),
    ("training", ("deftx.training",)),
    ("analysis", ("deftx.analysis",)),
    ("experiment", ("deftx.experiment",)),
    ("front end", ("deftx_cli",)),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return i
    return None


def imports(tree: ast.AST, name: str, is_package: bool) -> list[tuple[str, bool]]:
    """(imported module, inside a function) for every import of the project's own modules."""
    out = []
    scopes: list[ast.AST] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function) for a in child.names if a.name.split(".")[0] in PACKAGES)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = name.split(".") if is_package else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - child.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                if base.split(".")[0] in PACKAGES:
                    out.append((base, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


def main() -> None:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    modules = {module_name(p): p for p in files}
    per_folder: dict[str, int] = defaultdict(int)
    longest_modules, longest_functions = [], []
    inside: list[tuple[str, str]] = []
    graph: dict[str, set[str]] = defaultdict(set)
    upward: list[tuple[str, str]] = []
    for name, path in modules.items():
        text = path.read_text()
        tree = ast.parse(text)
        if path.name != "__init__.py":
            per_folder[str(path.parent.relative_to(ROOT))] += 1
        longest_modules.append((len(text.splitlines()), name))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                longest_functions.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}"))
        for target, in_function in imports(tree, name, path.name == "__init__.py"):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in modules or target == name:
                continue
            if in_function:
                inside.append((name, target))
            if path.name == "__init__.py" and name in PACKAGES:
                continue  # the package roots re-export
            graph[name].add(target)
            if target in PACKAGES and name != target:
                upward.append((name, target))  # a module importing its package root (which imports it); imports for type checkers count too
            a, b = layer_of(name), layer_of(target)
            if a is not None and b is not None and b > a:
                upward.append((name, target))
    cycles = find_cycles(graph)
    print("modules per folder (without __init__.py):")
    for folder, n in sorted(per_folder.items()):
        print(f"  {folder:28s} {n}")
    print("longest modules:", ", ".join(f"{n} ({lines})" for lines, n in sorted(longest_modules, reverse=True)[:5]))
    print("longest functions:", ", ".join(f"{n} ({lines})" for lines, n in sorted(longest_functions, reverse=True)[:6]))
    print(f"imports of the project's modules inside functions: {len(inside)} "
          f"(in deftx/: {sum(1 for a, _ in inside if a.startswith('deftx.') or a == 'deftx')})")
    print(f"import cycles: {len(cycles)}" + "".join(f"\n  {' -> '.join(c)}" for c in cycles))
    print(f"imports up the layers: {len(upward)}" + "".join(f"\n  {a} -> {b}" for a, b in sorted(set(upward))))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(graph):
        if v not in index:
            strong(v)
    return out


if __name__ == "__main__":
    main()
