"""The package layout rules (issue 9), checked on the source so they stay true.

The stage contracts (which package may import which) are import-linter contracts in
``pyproject.toml``, run by ``scripts/test.sh``; these tests check what import-linter does
not: module-level cycles, module size and function-local imports.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "instmix"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(mod: str, path: Path, mods: dict[str, Path]):
    """``(target module, node, inside a function)`` for every instmix import of ``mod``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names = [f"{target}.{a.name}" for a in child.names]
                for t in [n for n in names if n in mods] or [target]:
                    yield t, child, func
            elif isinstance(child, ast.Import):
                for a in child.names:
                    yield a.name, child, func
            yield from visit(child, func)

    yield from visit(tree, False)


def test_no_import_cycles_between_instmix_modules():
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _, _ in _imports(m, path, mods):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target.startswith("instmix") and target != m and target in mods:
                graph[m].add(target)
    # Tarjan's strongly connected components
    index, low, on, stack, cycles, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10_000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_modules_stay_small():
    big = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"


def _has_reason(lines: list[str], i: int) -> bool:
    """A ``# lazy: reason`` comment on the import, or on the first import of its block."""
    while i >= 0 and lines[i].lstrip().startswith(("import ", "from ")):
        if "lazy:" in lines[i]:
            return True
        i -= 1
    return False


def test_function_local_imports_are_heavy_optional_packages_with_a_reason():
    mods = _modules()
    bad = []
    for m, path in mods.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, node, in_func in _imports(m, path, mods):
            if not in_func:
                continue
            top = target.split(".")[0]
            where = f"{path.relative_to(PKG.parent)}:{node.lineno}: {target}"
            if top == "instmix" or top in sys.stdlib_module_names:
                bad.append(f"{where} (import it at the top of the module)")
            elif not _has_reason(lines, node.lineno - 1):
                bad.append(f"{where} (say why it is lazy: '# lazy: reason')")
    assert bad == [], "\n".join(bad)
