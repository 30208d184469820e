"""The engine runs without the UI: importing gateway never loads Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import importlib, pkgutil, sys
import gateway
for mod in pkgutil.walk_packages(gateway.__path__, "gateway."):
    importlib.import_module(mod.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "workbench"))
print(",".join(bad))
"""


def test_gateway_never_imports_textual_or_workbench() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


#: What a module under tests/ may import from tests/: the support package and the fixture apps.
TESTS_IMPORTABLE = ("tests.support", "tests.apps")


def _test_imports(tree: ast.AST, local: set[str]) -> list[str]:
    """The imports in `tree` that reach into tests/ other than through `TESTS_IMPORTABLE`:
    relative ones, `tests.<anything else>` (a test module or a folder's conftest), and bare
    names of modules that live under tests/ (`import harness`, `from conftest import ...`),
    which only resolve when some folder of tests/ is on sys.path."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            bad.append("." * node.level + (node.module or ""))
            continue
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            top = name.split(".")[0]
            if top == "tests":
                if not any(name == ok or name.startswith(ok + ".") for ok in TESTS_IMPORTABLE):
                    bad.append(name)
            elif top in local:
                bad.append(name)
    return bad


def _tests_modules() -> tuple[list[Path], set[str]]:
    paths = sorted((ROOT / "tests").rglob("*.py"))
    real = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}  # gateway, workbench
    local = {p.stem for p in paths if p.stem != "__init__"} - real
    return paths, local


def test_tests_import_helpers_only_from_tests_support() -> None:
    # tests/ is one package tree: a test module gets its helpers from tests.support and its
    # fixture apps from tests.apps, never from another test module or a conftest.py (pytest
    # loads those itself; importing one runs it twice, under two names).
    paths, local = _tests_modules()
    offenders = {str(p.relative_to(ROOT)): bad for p in paths
                 if (bad := _test_imports(ast.parse(p.read_text(encoding="utf-8")), local))}
    assert offenders == {}


def test_every_test_folder_is_a_package() -> None:
    # A folder without __init__.py is imported by its basename with the folder put on
    # sys.path: the flat namespace again, where two test files may not share a name.
    folders = {p.parent for p in (ROOT / "tests").rglob("*.py")}
    assert sorted(str(f.relative_to(ROOT)) for f in folders
                  if not (f / "__init__.py").exists()) == []


def test_the_import_rule_catches_what_it_forbids() -> None:
    local = {"harness", "conftest", "test_proxy_http"}
    code = """
import harness
from conftest import thing
from . import sibling
from tests.gateway.proxy.test_proxy_http import helper
from tests.gateway.proxy import conftest
from tests.support.harness import wait_until
from tests.apps import basic
import tests.support.chaos
from gateway.engine import Engine
"""
    assert _test_imports(ast.parse(code), local) == [
        "harness", "conftest", ".", "tests.gateway.proxy.test_proxy_http", "tests.gateway.proxy"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(name: str, path: Path, modules: set[str]) -> set[str]:
    """The project modules `name` imports when it runs: at module level or inside a function
    (a lazy import is still an import), but not under `if TYPE_CHECKING:`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit_node(other)
            else:
                visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:  # `from pkg import module` imports the module
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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
                        out.append(sorted(component))
    return out


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for pkg in ("gateway", "workbench")
             for p in (ROOT / pkg).rglob("*.py")}
    modules = set(paths)
    return {name: _runtime_imports(name, path, modules) for name, path in paths.items()}


def test_no_import_circles_but_type_only_ones() -> None:
    # A circle means neither module can be understood, tested or changed alone, and its
    # import order decides whether it works. Type-only imports (`if TYPE_CHECKING:`) are
    # allowed: they never run.
    graph = import_graph()
    assert "gateway.engine" in graph["gateway.headless"]  # the graph sees real imports
    assert _cycles(graph) == []


def test_the_circle_finder_finds_circles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
