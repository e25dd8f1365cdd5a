"""Checks that segnet_lib uses only TensorFlow 1.15's public API.

The book runs on TensorFlow 2.x through ``tensorflow.compat.v1`` but promises
code that reads and runs like TF 1.15 (README, "Why TensorFlow 2.x"). This tool
keeps that promise checkable without installing TF 1.15 (which needs Python
3.7):

1. ``pip download tensorflow-cpu==1.15.0 --python-version 3.7
   --only-binary=:all: --no-deps`` fetches the wheel (about 110 MB) into
   ``$SEGNET_CACHE_DIR/tf115`` (default ``~/.cache/segnet_lib/tf115``), never
   into the repository.
2. The wheel is read as a zip, without installing: every
   ``tensorflow_core/_api/v1/compat/v1/**/__init__.py`` lists the public names of
   ``tensorflow.compat.v1`` as ``from <private module> import <name>`` lines.
   Following those to the private modules gives each function's parameters
   and each class's attributes. The table is cached as JSON next to the wheel,
   so later runs take well under a second.
3. Every attribute chain rooted at ``tf`` in ``segnet_lib/**/*.py`` (found with
   ``ast``) is resolved in that table: ``tf.nn.max_pool_with_argmax`` must be a
   public name, ``tf.GraphKeys.UPDATE_OPS`` an attribute of a public class, and
   the keyword arguments of a call (``tf.nn.dropout(x, rate=...)``) parameters
   of the 1.15 function. Direct ``import tensorflow`` (outside
   ``segnet_lib/_tf.py``) and any Keras use are reported too. A line that is
   deliberately TF2-only (guarded, with a TF 1.15 fallback) can carry the
   comment ``# tf115-fence: allow``; uses of ``tf2`` from ``segnet_lib._tf`` are
   not checked (that name is the TF2 API by definition).

Usage::

    python tools/check_tf115_api.py            # exit 0 when clean, 1 with a list
    python tools/check_tf115_api.py --list     # also print every symbol used
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL_SPEC = "tensorflow-cpu==1.15.0"
WHEEL_GLOB = "tensorflow_cpu-1.15.0-*.whl"
API_ROOT = "tensorflow_core/_api/v1/compat/v1/"
SCHEMA = 3  # bump when the cached table's format changes
REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "segnet_lib"
# The one module allowed to import TensorFlow itself (it builds `tf` and `tf2`).
TF_IMPORT_MODULE = "_tf.py"
# Comment that exempts one line (its first line, for a multi-line statement).
ALLOW_PRAGMA = "tf115-fence: allow"


def cache_dir() -> Path:
    """``$SEGNET_CACHE_DIR/tf115``, default ``~/.cache/segnet_lib/tf115``."""
    root = os.environ.get("SEGNET_CACHE_DIR") or Path.home() / ".cache" / "segnet_lib"
    return Path(root) / "tf115"


# ---------------------------------------------------------------------------
# Reading the wheel
# ---------------------------------------------------------------------------

def download_wheel(dest: Path, timeout: int = 900) -> Path:
    """Downloads the TF 1.15 CPU wheel into ``dest`` (no install) and returns it.

    Raises:
        RuntimeError: pip failed (no network, no registry access); the message
            holds pip's last lines.
    """
    found = sorted(dest.glob(WHEEL_GLOB))
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--python-version", "3.7",
           "--only-binary=:all:", "--no-deps", "--disable-pip-version-check", "-d", str(dest)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"{' '.join(cmd)} failed: {e}") from e
    found = sorted(dest.glob(WHEEL_GLOB))
    if out.returncode != 0 or not found:
        tail = "\n".join((out.stderr or out.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"pip download {WHEEL_SPEC} failed (exit {out.returncode}): {tail}")
    return found[0]


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, drop_self=False) -> dict:
    a = fn.args
    names = [x.arg for x in getattr(a, "posonlyargs", []) + a.args + a.kwonlyargs]
    if drop_self and names and names[0] in ("self", "cls"):
        names = names[1:]
    return {"args": names, "vararg": a.vararg is not None, "varkw": a.kwarg is not None}


def _definitions(tree: ast.Module) -> dict:
    """Top-level functions, classes and assignments of a module, by name."""
    defs = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs[node.name] = node  # a def wins over later re-wrapping assignments
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id not in defs:
                    defs[target.id] = node
    return defs


def _describe(name: str, defs: dict, depth: int = 0) -> dict:
    """Kind and signature (or class attributes) of ``name`` in one module."""
    node = defs.get(name)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {"kind": "function", **_signature(node)}
    if isinstance(node, ast.ClassDef):
        attrs, init = set(), None
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                attrs.add(item.name)
                if item.name == "__init__":
                    init = _signature(item, drop_self=True)
            elif isinstance(item, ast.Assign):
                attrs.update(t.id for t in item.targets if isinstance(t, ast.Name))
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                attrs.add(item.target.id)
        # Bases defined in the same module are followed (DatasetV1 -> DatasetV2);
        # attributes inherited from other modules stay unknown.
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id != name and depth < 5:
                inherited = _describe(base.id, defs, depth + 1)
                if inherited["kind"] == "class":
                    attrs.update(inherited["attrs"])
                    init = init or inherited["init"]
        return {"kind": "class", "attrs": sorted(attrs), "init": init}
    if isinstance(node, ast.Assign) and depth < 5:
        # e.g. `x = deprecated(...)(y)` or `x = y`: describe the wrapped name.
        value = node.value
        while isinstance(value, ast.Call) and value.args:
            value = value.args[0]
        if isinstance(value, ast.Name) and value.id != name:
            inner = _describe(value.id, defs, depth + 1)
            if inner["kind"] != "unknown":
                return inner
    return {"kind": "unknown"}


class _Wheel:
    """Parsed Python modules of the wheel, by dotted name (``tensorflow.python.x``)."""

    def __init__(self, z: zipfile.ZipFile):
        self.z, self.names, self.cache = z, set(z.namelist()), {}

    def module(self, dotted: str):
        """``(defs, explicit imports, star imports, source)`` or None if absent."""
        if dotted in self.cache:
            return self.cache[dotted]
        result = None
        if dotted.split(".")[0] == "tensorflow":
            path = "tensorflow_core/" + "/".join(dotted.split(".")[1:])
            package = path.rstrip("/") + "/__init__.py"
            file = path + ".py" if path + ".py" in self.names else package
            try:
                text = self.z.read(file).decode("utf8")
                tree = ast.parse(text)
            except (KeyError, SyntaxError, ValueError):
                tree = None
            if tree is not None:
                base = dotted.split(".") if file == package else dotted.split(".")[:-1]
                explicit, stars = {}, []
                for node in tree.body:
                    if not isinstance(node, ast.ImportFrom):
                        continue
                    parts = base[:len(base) - (node.level - 1)] if node.level else []
                    source = ".".join(parts + ([node.module] if node.module else []))
                    for alias in node.names:
                        if alias.name == "*":
                            stars.append(source)
                        else:
                            explicit[alias.asname or alias.name] = (source, alias.name)
                result = (_definitions(tree), explicit, stars, text)
        self.cache[dotted] = result
        return result

    def resolve(self, dotted: str, name: str, depth: int = 0) -> dict:
        """What ``name`` in module ``dotted`` is, following re-exports."""
        mod = self.module(dotted) if depth < 8 else None
        if mod is None:
            return {"kind": "unknown"}
        defs, explicit, stars, text = mod
        if name in defs:
            if dotted.endswith("_pb2"):
                # A generated protobuf class: its nested messages, fields and enum
                # values all appear as name='...' in the descriptors.
                attrs = sorted(set(re.findall(r"name='([A-Za-z_][A-Za-z0-9_]*)'", text)))
                return {"kind": "protobuf", "attrs": attrs}
            return _describe(name, defs)
        if name in explicit:
            return self.resolve(*explicit[name], depth + 1)
        for star in stars:
            found = self.resolve(star, name, depth + 1)
            if found["kind"] != "unknown":
                return found
        return {"kind": "unknown"}


def extract_api(wheel: Path) -> dict:
    """The ``tensorflow.compat.v1`` table of TF 1.15 from its wheel.

    Returns:
        ``{"schema": ..., "wheel": name, "symbols": {dotted: info}}`` where a
        dotted name like ``"nn.max_pool_with_argmax"`` maps to ``{"kind":
        "module"}``, ``{"kind": "function", "args": [...], "vararg": bool,
        "varkw": bool}``, ``{"kind": "class", "attrs": [...], "init": {...}}``,
        ``{"kind": "protobuf", "attrs": [...]}`` (``Summary``) or ``{"kind":
        "unknown"}`` (a constant such as ``float32``).
    """
    symbols: dict[str, dict] = {}
    imports: list[tuple[str, str, str]] = []  # (public dotted name, source module, source name)
    with zipfile.ZipFile(wheel) as z:
        for member in sorted(z.namelist()):
            if not (member.startswith(API_ROOT) and member.endswith("/__init__.py")):
                continue
            package = member[len(API_ROOT):-len("__init__.py")].strip("/").replace("/", ".")
            if package:
                symbols[package] = {"kind": "module"}
            tree = ast.parse(z.read(member).decode("utf8"))
            for node in tree.body:
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                for alias in node.names:
                    public = alias.asname or alias.name
                    if public.startswith("_"):
                        continue
                    dotted = f"{package}.{public}" if package else public
                    if node.module.startswith("tensorflow._api.v1"):
                        symbols[dotted] = {"kind": "module"}
                    else:
                        imports.append((dotted, node.module, alias.name))
        wheel_modules = _Wheel(z)
        for dotted, module, source_name in imports:
            info = wheel_modules.resolve(module, source_name)
            if dotted.startswith("raw_ops."):
                info = {**info, "keyword_only": True}  # raw ops refuse positional args
            symbols[dotted] = info
    return {"schema": SCHEMA, "wheel": wheel.name, "symbols": symbols}


def load_api(directory: Path | None = None, download: bool = True) -> dict:
    """The cached TF 1.15 table, extracting (and downloading) it on first use.

    Raises:
        RuntimeError: the wheel is not cached and cannot be downloaded.
    """
    directory = directory or cache_dir()
    table = directory / "compat_v1_api.json"
    if table.is_file():
        data = json.loads(table.read_text())
        if data.get("schema") == SCHEMA:
            return data
    found = sorted(directory.glob(WHEEL_GLOB))
    if not found and not download:
        raise RuntimeError(f"no {WHEEL_GLOB} in {directory}")
    wheel = found[0] if found else download_wheel(directory)
    data = extract_api(wheel)
    tmp = table.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, table)  # atomic: concurrent test runs never read half a file
    return data


# ---------------------------------------------------------------------------
# Reading the library
# ---------------------------------------------------------------------------

def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


class Use(tuple):
    """(file, line, dotted name without the root, call keywords or None, positional count)."""

    __slots__ = ()

    def __new__(cls, file, line, name, keywords=None, positional=0):
        return super().__new__(cls, (file, line, name, keywords, positional))

    file = property(lambda self: self[0])
    line = property(lambda self: self[1])
    name = property(lambda self: self[2])
    keywords = property(lambda self: self[3])
    positional = property(lambda self: self[4])


def scan_source(source: str, file: str) -> tuple[list[Use], list[str]]:
    """``tf.`` uses and import problems in one module's source."""
    tree = ast.parse(source, file)
    # A deliberate TF2-only line (e.g. a guarded GPU-determinism switch that TF 1.15
    # does not have) can opt out with a visible comment on its first line.
    allowed = {n for n, text in enumerate(source.splitlines(), 1) if ALLOW_PRAGMA in text}
    roots, problems = set(), []
    is_tf_module = Path(file).name == TF_IMPORT_MODULE
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in allowed:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "segnet_lib._tf" or node.module.endswith("._tf"):
                roots.update(a.asname or a.name for a in node.names if a.name == "tf")
            elif node.module.split(".")[0] == "tensorflow" and not is_tf_module:
                problems.append(f"{file}:{node.lineno}: 'from {node.module} import ...' "
                                "(use `from segnet_lib._tf import tf`)")
            if "keras" in node.module.split("."):
                problems.append(f"{file}:{node.lineno}: Keras import {node.module!r}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorflow.compat.v1":
                    roots.add(alias.asname or "tensorflow")
                elif alias.name.split(".")[0] == "tensorflow" and not is_tf_module:
                    problems.append(f"{file}:{node.lineno}: 'import {alias.name}' "
                                    "(use `from segnet_lib._tf import tf`)")
                if "keras" in alias.name.split("."):
                    problems.append(f"{file}:{node.lineno}: Keras import {alias.name!r}")
    if not roots:
        return [], problems
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    uses = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner or node.lineno in allowed:
            continue
        chain = _chain(node)
        if not chain or chain[0] not in roots:
            continue
        call = calls.get(id(node))
        keywords = positional = None
        if call is not None:
            keywords = [k.arg for k in call.keywords if k.arg is not None]
            positional = len(call.args)
        uses.append(Use(file, node.lineno, ".".join(chain[1:]), keywords, positional or 0))
    return uses, problems


def scan_library(root: Path = LIBRARY) -> tuple[list[Use], list[str]]:
    """``tf.`` uses and import problems in every ``.py`` under ``root``."""
    uses, problems = [], []
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(root.parent))
        u, p = scan_source(path.read_text(), rel)
        uses += u
        problems += p
    return uses, problems


# ---------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------

def check_use(use: Use, symbols: dict) -> str | None:
    """``None`` when ``tf.<use.name>`` (and its call keywords) exist in TF 1.15."""
    where = f"{use.file}:{use.line}: tf.{use.name}"
    parts = use.name.split(".")
    if parts[0] == "keras" or parts[:1] == ["layers"]:
        return f"{where}: Keras-based API (not allowed)"
    info, i = None, 0
    for i in range(len(parts)):
        dotted = ".".join(parts[:i + 1])
        info = symbols.get(dotted)
        if info is None:
            return f"{where}: not in TF 1.15's tensorflow.compat.v1 (no {dotted!r})"
        if info["kind"] != "module":
            break
    rest = parts[i + 1:]
    if rest:
        if info["kind"] not in ("class", "protobuf") or len(rest) > 1:
            return f"{where}: cannot verify {'.'.join(rest)!r} on a {info['kind']}"
        if rest[0] not in info["attrs"]:
            return (f"{where}: TF 1.15 {info['kind']} {'.'.join(parts[:i + 1])} has no "
                    f"attribute {rest[0]!r}")
        return None
    if use.keywords is None:
        return None
    sig = info.get("init") if info["kind"] == "class" else info
    if info["kind"] not in ("function", "class") or not sig:
        return None
    if info.get("keyword_only") and use.positional:
        return f"{where}: raw ops take keyword arguments only in TF 1.15"
    if not sig["varkw"]:
        unknown = [k for k in use.keywords if k not in sig["args"]]
        if unknown:
            return f"{where}: TF 1.15 has no parameter {', '.join(map(repr, unknown))}"
    if not sig["vararg"] and use.positional > len(sig["args"]):
        return f"{where}: {use.positional} positional arguments, TF 1.15 takes {len(sig['args'])}"
    return None


def check(symbols: dict, root: Path = LIBRARY) -> tuple[list[Use], list[str]]:
    """All uses under ``root`` and the list of problems (empty when clean)."""
    uses, problems = scan_library(root)
    problems = problems + [p for p in (check_use(u, symbols) for u in uses) if p]
    return uses, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print every tf. symbol used")
    parser.add_argument("--root", type=Path, default=LIBRARY, help="package folder to scan")
    args = parser.parse_args(argv)
    try:
        api = load_api()
    except RuntimeError as e:
        print(f"cannot obtain the TF 1.15 API table: {e}", file=sys.stderr)
        return 2
    uses, problems = check(api["symbols"], args.root)
    if args.list:
        for name in sorted({u.name for u in uses}):
            print(f"tf.{name}")
    print(f"{len({u.name for u in uses})} distinct tf. symbols in {len(uses)} places, "
          f"checked against {api['wheel']}: {len(problems)} problem(s)")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
