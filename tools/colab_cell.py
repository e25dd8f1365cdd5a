"""Inserts (or updates) the Colab set-up cell at the top of notebooks.

On Google Colab a notebook opened from the book's launch button has no
``segnet_lib`` and no ``reference/`` folder. The cell this tool writes, the
first code cell of a notebook, clones the repository and installs the library
there; anywhere else it does nothing (``"google.colab"`` is only in
``sys.modules`` on Colab), so local runs and nbval are unaffected.

The repository's address has one home, ``repository.url`` in ``_config.yml``;
the cell repeats it, and ``tests/test_book.py`` checks that every notebook's
cell names exactly that address. Run this tool again after changing it.

Usage:
    python tools/colab_cell.py [--check] [notebooks/01_rle_masks.ipynb ...]

Without paths: every ``notebooks/*.ipynb``. ``--check`` changes nothing and
exits 1 when a notebook lacks the cell or has an outdated one.
"""
import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CELL_ID = "colab-setup"
MARKER = '"google.colab" in sys.modules'

TEMPLATE = '''\
# On Google Colab: fetch the book's repository and install its library (a no-op elsewhere).
import importlib.util
import os
import sys

if {marker} and importlib.util.find_spec("segnet_lib") is None:
    import site
    import subprocess

    if not os.path.isdir("{folder}"):
        subprocess.run(["git", "clone", "--depth", "1", "{url}",
                        "{folder}"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", "{folder}"], check=True)
    site.addsitedir(site.getsitepackages()[0])  # use the new install without a restart'''


def repository_url(config_path: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's ``_config.yml``, without a trailing slash."""
    config = yaml.safe_load(Path(config_path).read_text())
    return config["repository"]["url"].rstrip("/")


def cell_source(url: str) -> str:
    """The Colab cell's code for the repository at ``url``."""
    folder = url.rsplit("/", 1)[-1]
    return TEMPLATE.format(marker=MARKER, url=url, folder=folder)


def find_cell(nb) -> int | None:
    """Index of the notebook's Colab cell (a code cell testing for Colab), or None."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and MARKER in cell.source:
            return i
    return None


def apply(path: Path, url: str, check: bool = False) -> str:
    """Puts the current Colab cell first among the code cells of one notebook.

    Returns what was (or, with ``check``, would be) done: ``'ok'``,
    ``'updated'`` or ``'inserted'``.
    """
    nb = nbformat.read(path, as_version=4)
    source = cell_source(url)
    index = find_cell(nb)
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    if index is not None and index == first_code and nb.cells[index].source == source:
        return "ok"
    action = "inserted" if index is None else "updated"
    if check:
        return action
    if index == first_code:  # in place: only the code changed
        nb.cells[index].source = source
    else:
        if index is not None:
            del nb.cells[index]
            first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"),
                              len(nb.cells))
        cell = nbformat.v4.new_code_cell(source)
        cell.id = CELL_ID
        nb.cells.insert(first_code, cell)
    nbformat.write(nb, path)
    return action


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook needs the cell inserted or updated")
    args = parser.parse_args(argv)
    paths = args.paths or sorted((ROOT / "notebooks").glob("*.ipynb"))
    url = repository_url()
    stale = []
    for path in paths:
        action = apply(path, url, check=args.check)
        print(f"{path}: {action if not args.check or action == 'ok' else 'needs the cell ' + action}")
        if action != "ok":
            stale.append(path)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
