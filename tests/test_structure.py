"""The library's layout rules, checked on the source (ast), not by importing it.

* no import cycle inside ``segnet_lib`` (a package ``__init__`` counts: importing
  ``segnet_lib.a.b`` runs ``segnet_lib/__init__.py`` and ``segnet_lib/a/__init__.py``);
* no import of a ``segnet_lib`` module inside a function (imports at the top);
* no module over 700 lines;
* no private name (``_x``) of one module used in another, in the library, the
  tests, the benchmarks, the tools or the notebooks;
* a test file per module.

Each check is a function of a source tree, and each is shown once to fail on a
deliberately broken package written to a temporary folder.
"""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "segnet_lib"
MAX_LINES = 700
# Lazy sibling imports with a reason. Importing the package must not import
# TensorFlow (a CLI's --help, the sample-data generator and the RLE codec do
# not need it), so setup() imports it when called.
ALLOWED_LAZY = {("segnet_lib._setup", "segnet_lib._tf")}
# The order the README ("Design") and the package docstring give: a module may
# import only modules of earlier layers. "" is the package's __init__, which every
# module imports implicitly and which imports only _setup.
LAYERS = [
    ["_tf", "_setup"], [""], ["files"], ["rle_text"], ["rle"], ["rle_csv"], ["voc"],
    ["sample_data", "cells"], ["datasets"], ["data"], ["unpool"], ["layers"], ["model"], ["unet"],
    ["weights"], ["metrics"], ["losses", "runtime"], ["memory"], ["checkpoints"], ["config"],
    ["recipes"], ["export", "distribute", "step"], ["train"],
    ["reference"], ["bayes", "viz", "study", "gpu_check"], ["cli"], ["__main__"],
]


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

def package_modules(root: Path, package: str) -> dict:
    """``{dotted module name: path}`` of every .py file of ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _targets(node, module: str, is_package: bool, known, parents: bool) -> set:
    """Modules of ``known`` that an Import/ImportFrom node names (with ``parents``:
    also the packages above them, whose ``__init__`` runs first)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        # 'from pkg import name': a submodule if there is one, else a name of pkg.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    found = set()
    for name in names:
        prefixes = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)]
        prefixes = [p for p in prefixes if p in known]
        found |= set(prefixes) if parents else set(prefixes[-1:])
    return found


def _walk_imports(tree):
    """``(node, inside_a_function)`` for every import statement of a module."""
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from visit(tree, False)


def import_graph(root: Path, package: str):
    """``(graph, lazy)``: top-level import edges between the package's modules, and the
    imports of package modules made inside functions as ``(module, line, target)``."""
    modules = package_modules(root, package)
    graph, lazy = {m: set() for m in modules}, []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node, in_function in _walk_imports(tree):
            if in_function:
                named = _targets(node, module, is_package, modules, parents=False) - {module}
                lazy += [(module, node.lineno, t) for t in sorted(named)]
            else:
                graph[module] |= _targets(node, module, is_package, modules, parents=True) - {module}
    return graph, lazy


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def long_modules(root: Path, package: str, limit: int = MAX_LINES) -> list:
    """``(module, lines)`` of the modules longer than ``limit`` lines."""
    out = []
    for module, path in package_modules(root, package).items():
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append((module, n))
    return out


def private_uses(source: str, where: str, known) -> list:
    """Private names of package modules (``known``) that ``source`` imports or reads.

    Flags ``from pkg.mod import _name`` and ``mod._name`` where ``mod`` was
    bound by an import of a package module. Private *modules* (``_tf``) may
    be imported; their names must then be public. Dunders are not private.
    """
    tree = ast.parse(source, where)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    aliases[alias.asname or alias.name] = full
                elif node.module in known and alias.name.startswith("_") \
                        and not alias.name.startswith("__"):
                    found.append(f"{where}:{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{where}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return found


def _sources(root: Path, package: str):
    """``(where, source)`` of the package, tests, benchmarks, tools and notebook code cells."""
    for folder in (package, "tests", "benchmarks", "tools"):
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else []:
            yield str(path.relative_to(root)), path.read_text()
    for path in sorted((root / "notebooks").glob("*.ipynb")) if (root / "notebooks").is_dir() else []:
        cells = json.loads(path.read_text())["cells"]
        for k, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                lines = "".join(cell["source"]).splitlines()
                # IPython magics and shell escapes are not Python.
                code = "\n".join("" if line.lstrip()[:1] in "%!" else line for line in lines)
                yield f"{path.relative_to(root)} cell {k}", code


def _own(use: str, known) -> bool:
    """Whether a reported use is a module reading its own private name (allowed)."""
    where, _, rest = use.partition(": ")
    path = Path(where.split(" cell ")[0].rsplit(":", 1)[0])
    if path.suffix != ".py" or path.parts[0] != PACKAGE:
        return False
    parts = path.with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return rest.startswith(f"{module}.") or rest.startswith(f"from {module} import")


# ---------------------------------------------------------------------------
# The rules, on segnet_lib
# ---------------------------------------------------------------------------

def test_no_import_cycle_in_segnet_lib():
    graph, _ = import_graph(REPO, PACKAGE)
    assert len(graph) > 20  # the walk found the modules
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_imports_follow_the_documented_layers():
    graph, _ = import_graph(REPO, PACKAGE)
    level = {f"{PACKAGE}.{name}".rstrip("."): i for i, layer in enumerate(LAYERS) for name in layer}

    def layer_of(module):  # cli.train is in cli's layer
        return level.get(".".join(module.split(".")[:2]), -1)

    assert [m for m in graph if layer_of(m) < 0] == [], "a module has no layer in LAYERS"
    cli_layer = level[f"{PACKAGE}.cli"]
    upward = [(a, b) for a, targets in graph.items() for b in targets
              if layer_of(b) >= layer_of(a) and not (layer_of(a) == layer_of(b) == cli_layer)]
    assert upward == []


def test_no_sibling_import_inside_a_function():
    _, lazy = import_graph(REPO, PACKAGE)
    bad = [(m, line, t) for m, line, t in lazy if (m, t) not in ALLOWED_LAZY]
    assert not bad, bad
    used = {(m, t) for m, _, t in lazy}
    assert ALLOWED_LAZY <= used, "an allowed lazy import is gone: drop it from ALLOWED_LAZY"


def test_importing_the_package_does_not_import_tensorflow():
    """The reason for the one lazy import above."""
    code = f"import sys, {PACKAGE}; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_no_module_over_700_lines():
    assert long_modules(REPO, PACKAGE) == []


def test_no_private_name_used_outside_its_module():
    known = set(package_modules(REPO, PACKAGE))
    uses = [use for where, source in _sources(REPO, PACKAGE)
            for use in private_uses(source, where, known)]
    assert [use for use in uses if not _own(use, known)] == []


def test_every_module_has_its_test_file():
    """House style: tests/test_<module>.py per module (cli/ and the _ helpers have theirs)."""
    covered_elsewhere = {"_tf": "test_setup", "_setup": "test_setup", "__main__": "test_setup"}
    missing = []
    for path in sorted((REPO / PACKAGE).glob("*.py")):
        name = path.stem
        if name == "__init__":
            continue
        test = covered_elsewhere.get(name, f"test_{name}")
        if not (REPO / "tests" / f"{test}.py").is_file():
            missing.append(name)
    assert (REPO / "tests" / "test_cli.py").is_file() and missing == []


# ---------------------------------------------------------------------------
# Each check fails on a broken package
# ---------------------------------------------------------------------------

def write_package(root: Path, files: dict) -> Path:
    for name, text in files.items():
        path = root / "brokenpkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_cycle_check_finds_a_cycle(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "", "a.py": "from brokenpkg import b\n",
        "b.py": "from brokenpkg.c import thing\n", "c.py": "import brokenpkg.a\nthing = 1\n",
        "d.py": "from . import a\n"})
    graph, _ = import_graph(root, "brokenpkg")
    assert graph["brokenpkg.d"] == {"brokenpkg", "brokenpkg.a"}  # relative, and the package
    assert find_cycle(graph) == ["brokenpkg.a", "brokenpkg.b", "brokenpkg.c", "brokenpkg.a"]
    # Through a package __init__ too: importing the package runs it.
    root = write_package(tmp_path / "init", {"__init__.py": "from brokenpkg import a\n",
                                             "a.py": "import numpy\n", "b.py": "import brokenpkg.a\n",
                                             "sub/__init__.py": "from brokenpkg import b\n"})
    graph, _ = import_graph(root, "brokenpkg")
    assert find_cycle(graph) is None
    (root / "brokenpkg" / "a.py").write_text("from brokenpkg.sub import x\n")
    graph, _ = import_graph(root, "brokenpkg")
    assert find_cycle(graph) is not None


def test_the_lazy_import_check_finds_an_import_in_a_function(tmp_path):
    root = write_package(tmp_path, {
        "__init__.py": "", "a.py": "import json\n\ndef f():\n    import json\n    return json\n",
        "b.py": "class C:\n    def m(self):\n        from brokenpkg import a\n        return a\n"})
    graph, lazy = import_graph(root, "brokenpkg")
    assert lazy == [("brokenpkg.b", 3, "brokenpkg.a")]
    assert graph["brokenpkg.b"] == set()  # not a top-level edge


def test_the_length_check_finds_a_long_module(tmp_path):
    root = write_package(tmp_path, {"__init__.py": "", "short.py": "x = 1\n" * 700,
                                    "long.py": "x = 1\n" * 701})
    assert long_modules(root, "brokenpkg") == [("brokenpkg.long", 701)]


def test_the_private_name_check_finds_private_uses(tmp_path):
    root = write_package(tmp_path, {"__init__.py": "", "a.py": "_secret = 1\n__all__ = []\n",
                                    "_helper.py": "tool = 1\n"})
    known = set(package_modules(root, "brokenpkg"))
    source = ("from brokenpkg.a import _secret\nfrom brokenpkg import a as alias\n"
              "import brokenpkg.a\nfrom brokenpkg._helper import tool\n"
              "alias._secret, alias.__all__, brokenpkg.a, tool, other._x\n")
    assert private_uses(source, "t.py", known) == [
        "t.py:1: from brokenpkg.a import _secret", "t.py:5: brokenpkg.a._secret"]
    assert _own(f"{PACKAGE}/rle.py:3: {PACKAGE}.rle._x", known | {f"{PACKAGE}.rle"})
    assert not _own(f"{PACKAGE}/voc.py:3: {PACKAGE}.rle._x", known)


def test_private_uses_are_found_in_notebook_cells(tmp_path):
    (tmp_path / PACKAGE).mkdir()
    (tmp_path / PACKAGE / "rle.py").write_text("")
    (tmp_path / "notebooks").mkdir()
    cells = [{"cell_type": "code", "source": ["%matplotlib inline\n", "from segnet_lib import rle\n",
                                              "rle._parse(1)\n"]}]
    (tmp_path / "notebooks" / "n.ipynb").write_text(json.dumps({"cells": cells}))
    known = set(package_modules(tmp_path, PACKAGE))
    uses = [u for where, src in _sources(tmp_path, PACKAGE) for u in private_uses(src, where, known)]
    assert uses == ["notebooks/n.ipynb cell 0:3: segnet_lib.rle._parse"]


@pytest.mark.parametrize("module", ["segnet_lib.cli.train", "segnet_lib.train"])
def test_the_graph_resolves_the_real_imports(module):
    graph, _ = import_graph(REPO, PACKAGE)
    assert "segnet_lib.config" in graph[module] and PACKAGE in graph[module]
