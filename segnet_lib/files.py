"""Files that readers see whole or not at all, and the library's cache folder.

Everything the library writes for later (checkpoints, exports, result tables,
the sample data) goes through this module, so that a crash, a ``kill -9`` or a
full disk mid-write leaves the previous version (or nothing), never a
half-written file that looks complete:

* :func:`atomic_write_text` / :func:`atomic_write_bytes` write a temporary
  file next to the target, flush it to disk and rename it over the target
  (``os.replace`` is atomic on POSIX and Windows).
* :func:`publish_dir` does the same for a folder written under a temporary
  name (:func:`temp_path`): a checkpoint, the generated sample data.
* :func:`recover_dirs` tidies what a process killed mid-publish left behind.
* :func:`cached_dir` builds a folder once (generated data) on top of those.

:func:`cache_dir` is the one place that decides where generated data lives
(``$SEGNET_CACHE_DIR``, default ``~/.cache/segnet_lib``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

__all__ = ["CACHE_ENV", "DONE_FILE", "cache_dir", "atomic_write_text", "atomic_write_bytes",
           "fsync_dir", "temp_path", "publish_dir", "recover_dirs", "cached_dir"]

#: Environment variable naming the cache folder (sample data, sample runs, studies).
CACHE_ENV = "SEGNET_CACHE_DIR"
#: The file :func:`cached_dir` writes last into a folder it built: its presence means complete.
DONE_FILE = ".complete"

# Suffixes of the temporary names: '.<name>.tmp-<pid>' while being written,
# '.<name>.old-<pid>' for the previous version while a new one replaces it.
_TMP = ".tmp-"
_OLD = ".old-"


def cache_dir() -> Path:
    """``$SEGNET_CACHE_DIR``, or ``~/.cache/segnet_lib``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "segnet_lib").expanduser()


def temp_path(final) -> Path:
    """The temporary sibling under which ``final`` is written: ``.<name>.tmp-<pid>``.

    Hidden (leading dot) and named after the process, so two writers never
    share one, and :func:`recover_dirs` can tell it from finished work.
    """
    final = Path(final)
    return final.with_name(f".{final.name}{_TMP}{os.getpid()}")


def fsync_dir(path) -> None:
    """Flushes a folder's entries (new names, renames) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` so that readers see the old or the new content, never half.

    Args:
        path: the file (its folder must exist).
        data: the new content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def publish_dir(tmp, final, *, replace: bool = False, sync: bool = False) -> Path:
    """Renames the finished folder ``tmp`` to ``final`` in one atomic step.

    Args:
        tmp: the folder as written (e.g. :func:`temp_path` of ``final``).
        final: where it belongs.
        replace: if ``final`` exists, move it aside, rename, then delete the
            old one (a checkpoint saved twice at one step). Otherwise an
            existing ``final`` wins: it was published by another process
            first, and ``tmp`` is deleted.
        sync: flush the files in ``tmp`` and the folder entries to disk
            first (a checkpoint must survive a power cut; a cache need not).

    Returns:
        ``final`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the rename failed for another reason than an existing ``final``.
    """
    tmp, final = Path(tmp), Path(final)
    if sync:
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(tmp)
    if final.exists() and replace:
        old = final.with_name(f".{final.name}{_OLD}{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # lost the race: keep the first copy
    if sync:
        fsync_dir(final.parent)
    return final


def recover_dirs(parent, prefix: str) -> None:
    """Tidies the temporary folders of a process killed while publishing.

    For names starting with ``prefix`` in ``parent``: deletes ``.<name>.tmp-*``
    (never finished), and for ``.<name>.old-*`` (the previous version, moved
    aside by :func:`publish_dir` with ``replace=True``) deletes it if the new
    ``<name>`` exists, else renames it back. Call it only while no other
    process writes there (e.g. holding the run's lock).
    """
    parent = Path(parent)
    for stale in parent.glob(f".{prefix}*{_OLD}*"):
        final = parent / stale.name[1:].split(_OLD)[0]
        if final.exists():
            shutil.rmtree(stale, ignore_errors=True)
        else:  # killed between the two renames of a replacement: put it back
            os.rename(stale, final)
    for stale in parent.glob(f".{prefix}*{_TMP}*"):
        shutil.rmtree(stale, ignore_errors=True)


def cached_dir(final, build: Callable[[Path], object], note: str = "") -> Path:
    """The folder ``final``, built by ``build(folder)`` on first use and published whole.

    ``build`` writes into a temporary sibling (:func:`temp_path`); then
    :data:`DONE_FILE` (holding ``note``) is written and the folder renamed into
    place (:func:`publish_dir`). An interrupted build leaves no half folder, and
    when two processes build at once, the first to publish wins and the other
    uses its copy.

    Args:
        final: where the folder belongs (e.g. under :func:`cache_dir`).
        build: fills the folder it is given; may raise (nothing is published).
        note: what the folder is, written into :data:`DONE_FILE`.

    Returns:
        ``final`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``final`` exists without :data:`DONE_FILE` and could not
            be replaced (delete it and retry).
    """
    final = Path(final)
    if (final / DONE_FILE).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier process with our pid
    tmp.mkdir()
    try:
        build(tmp)
        (tmp / DONE_FILE).write_text(note + "\n")
        if final.exists() and not (final / DONE_FILE).exists():
            shutil.rmtree(final, ignore_errors=True)  # incomplete (made by hand?)
        publish_dir(tmp, final)
        if not (final / DONE_FILE).exists():  # lost a race against a broken copy
            raise FileExistsError(f"{final} exists but is incomplete; delete it and retry")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
