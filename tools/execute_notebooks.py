"""Re-executes notebooks in place and stores their outputs (``make execute``).

The committed outputs are what the book shows and what ``pytest --nbval``
compares against, so they must come from a clean, in-order run in the
notebook's own folder. Widget state is stored so the HTML book can render it.

Usage: python tools/execute_notebooks.py notebooks/01_rle_masks.ipynb [...]
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 1800) -> float:
    """Runs one notebook top to bottom and writes it back; returns seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=False,
        store_widget_state=True, resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    for cell in nb.cells:
        # Timestamps would make every re-run a diff.
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def main(paths):
    for p in map(Path, paths):
        print(f"{p}: {execute(p):.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(Path("notebooks").glob("*.ipynb")))
