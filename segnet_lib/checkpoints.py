"""The run folder: its files, the history table, checkpoint folders and the run lock.

A *run folder* holds everything about one training run, so rerunning the same
command continues where it stopped::

    runs/first/
      config.json              the TrainConfig (checked on resume)
      class_weights.json       the loss weights, computed once
      history.csv              one row per logged step (see HISTORY_COLUMNS)
      checkpoint               TensorFlow's checkpoint state (latest + kept ones)
      best_checkpoint          the same for the best validation mIoU
      ckpt-00000500/           one folder per checkpoint: model.index,
                               model.data-*, meta.json, history.csv
      train/events.out...      TensorBoard summaries
      export/                  the inference model (see segnet_lib.export)
      .lock, .complete         held while training; written when finished

Why a folder per checkpoint: it is written under a temporary name and renamed
into place in one atomic step (:func:`segnet_lib.files.publish_dir`), so a
crash or ``kill -9`` mid-write leaves the earlier checkpoints intact and never
a half-written one that looks complete. :class:`Checkpoints` keeps the last
``keep_last`` of them, plus the one with the best validation mean IoU.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from segnet_lib._tf import tf
from segnet_lib.files import atomic_write_text, publish_dir, recover_dirs, temp_path

__all__ = [
    "CONFIG_FILE", "HISTORY_FILE", "CLASS_WEIGHTS_FILE", "CHECKPOINT_DIR_PREFIX",
    "CHECKPOINT_BASENAME", "META_FILE", "BEST_STATE_FILE", "SUMMARY_DIR", "LOCK_FILE",
    "DONE_FILE", "HISTORY_COLUMNS", "write_history", "read_history", "checkpoint_history",
    "checkpoint_dirs", "read_meta", "latest_checkpoint", "best_checkpoint", "find_checkpoint",
    "Checkpoints",
    "RunInUse", "run_lock", "read_class_weights", "write_class_weights",
]

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CLASS_WEIGHTS_FILE = "class_weights.json"
CHECKPOINT_DIR_PREFIX = "ckpt-"
CHECKPOINT_BASENAME = "model"
META_FILE = "meta.json"
BEST_STATE_FILE = "best_checkpoint"
SUMMARY_DIR = "train"
LOCK_FILE = ".lock"
DONE_FILE = ".complete"

#: Columns of the history table, in order. ``val_*`` are NaN except on
#: validation steps; ``loss`` and ``pixel_accuracy`` are means over the steps
#: since the previous row.
HISTORY_COLUMNS = (
    "step", "epoch", "loss", "pixel_accuracy", "learning_rate", "images_per_second",
    "elapsed_seconds", "val_loss", "val_pixel_accuracy", "val_class_accuracy", "val_mean_iou",
)


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------

def write_history(path, rows: Sequence[dict]) -> pd.DataFrame:
    """Writes history rows (dicts keyed by :data:`HISTORY_COLUMNS`) as a CSV, atomically.

    Returns:
        The table as a DataFrame.
    """
    frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
    # Full precision (no float_format): a resumed run reads back exactly the
    # numbers it wrote.
    atomic_write_text(path, frame.to_csv(index=False))
    return frame


def read_history(run_dir) -> pd.DataFrame:
    """The history table of a run (``history.csv``; see :data:`HISTORY_COLUMNS`)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no history in {run_dir}")
    return pd.read_csv(path)


def checkpoint_history(ckpt_dir: Optional[Path]) -> list:
    """The history rows saved with a checkpoint (what a resumed run continues), or ``[]``."""
    if ckpt_dir is None or not (Path(ckpt_dir) / HISTORY_FILE).is_file():
        return []
    return pd.read_csv(Path(ckpt_dir) / HISTORY_FILE).to_dict("records")


# ---------------------------------------------------------------------------
# Checkpoint folders
# ---------------------------------------------------------------------------

def checkpoint_dirs(run_dir) -> list:
    """Complete checkpoint folders of a run, oldest first, as ``(step, path)``."""
    found = []
    for p in Path(run_dir).glob(f"{CHECKPOINT_DIR_PREFIX}*"):
        suffix = p.name[len(CHECKPOINT_DIR_PREFIX):]
        if p.is_dir() and suffix.isdigit() and (p / META_FILE).is_file():
            found.append((int(suffix), p))
    return sorted(found)


def read_meta(ckpt_dir) -> dict:
    """A checkpoint folder's ``meta.json`` (step, learning rate, time, validation mIoU)."""
    return json.loads((Path(ckpt_dir) / META_FILE).read_text())


def latest_checkpoint(run_dir) -> Optional[str]:
    """Prefix of the newest complete checkpoint of a run (for ``Saver.restore``), or None."""
    found = checkpoint_dirs(run_dir)
    return str(found[-1][1] / CHECKPOINT_BASENAME) if found else None


def best_checkpoint(run_dir) -> Optional[str]:
    """Prefix of the checkpoint with the best validation mean IoU (else the newest), or None."""
    best = _best_dir(Path(run_dir))
    return str(best / CHECKPOINT_BASENAME) if best else latest_checkpoint(run_dir)


def _best_dir(run_dir: Path) -> Optional[Path]:
    scored = []
    for step, path in checkpoint_dirs(run_dir):
        miou = read_meta(path).get("val_mean_iou")
        if miou is not None and math.isfinite(miou):
            # Ties go to the earlier checkpoint: it was best first.
            scored.append((miou, -step, path))
    return max(scored)[2] if scored else None


def find_checkpoint(run_dir, which: str = "best") -> str:
    """The checkpoint prefix that ``which`` names in a run folder.

    Args:
        run_dir: the run folder.
        which: ``'best'`` (best validation mIoU), ``'latest'``, or a checkpoint
            prefix such as ``run/ckpt-00000600/model``.

    Raises:
        FileNotFoundError: the run has no checkpoint, or no such prefix.
    """
    if which in ("best", "latest"):
        prefix = best_checkpoint(run_dir) if which == "best" else latest_checkpoint(run_dir)
        if prefix is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
        return prefix
    if not Path(str(which) + ".index").is_file():
        raise FileNotFoundError(f"checkpoint {str(which)!r} not found (no {which}.index)")
    return str(which)


class Checkpoints:
    """Atomic checkpoint folders; keeps the last K and the best by validation mIoU.

    Making one tidies what a process killed mid-save left behind, so hold the
    run's lock (:func:`run_lock`) first.

    Args:
        run_dir: the run folder.
        saver: the ``tf.train.Saver`` of the training graph.
        keep_last: checkpoints kept besides the best one.
    """

    def __init__(self, run_dir, saver, keep_last: int):
        self.run_dir = Path(run_dir)
        self.saver = saver
        self.keep_last = keep_last
        recover_dirs(self.run_dir, CHECKPOINT_DIR_PREFIX)

    def save(self, sess, step: int, meta: dict, history: Sequence[dict]) -> Path:
        """Saves the session's variables with ``meta`` and the history so far.

        Returns:
            The new checkpoint folder (``ckpt-<step>``).
        """
        final = self.run_dir / f"{CHECKPOINT_DIR_PREFIX}{step:08d}"
        tmp = temp_path(final)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.saver.save(sess, str(tmp / CHECKPOINT_BASENAME), write_meta_graph=False,
                        write_state=False)
        write_history(tmp / HISTORY_FILE, history)
        atomic_write_text(tmp / META_FILE, json.dumps(dict(meta, step=step), indent=1))
        # Saved twice at one step (e.g. Ctrl-C right after a save): the new one wins.
        publish_dir(tmp, final, replace=True, sync=True)
        self._prune_and_record()
        return final

    def _prune_and_record(self) -> None:
        found = checkpoint_dirs(self.run_dir)
        keep = {p for _, p in found[-self.keep_last:]}
        best = _best_dir(self.run_dir)
        if best is not None:
            keep.add(best)
        for _, path in found:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)
        kept = [f"{p.name}/{CHECKPOINT_BASENAME}" for _, p in found if p in keep]
        # TensorFlow's own state files, so tf.train.latest_checkpoint(run_dir)
        # and TensorBoard find them too. Paths are relative: the folder can move.
        tf.train.update_checkpoint_state(str(self.run_dir), kept[-1], kept)
        if best is not None:
            tf.train.update_checkpoint_state(str(self.run_dir), f"{best.name}/{CHECKPOINT_BASENAME}",
                                             [f"{best.name}/{CHECKPOINT_BASENAME}"],
                                             latest_filename=BEST_STATE_FILE)


# ---------------------------------------------------------------------------
# The run lock
# ---------------------------------------------------------------------------

class RunInUse(RuntimeError):
    """Another process holds the run folder's lock (it is training there)."""


@contextlib.contextmanager
def run_lock(run_dir, wait: bool = False):
    """One process per run folder: a second trainer fails fast (or waits).

    Args:
        run_dir: the run folder (created).
        wait: block until the other process is done instead of failing.

    Raises:
        RunInUse: another process holds the lock and ``wait`` is False.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RunInUse(
                f"another process is training in {run_dir}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Class weights
# ---------------------------------------------------------------------------

def read_class_weights(run_dir) -> Optional[dict]:
    """``class_weights.json`` of a run: ``class_weighting``, ``weights``, ``classes``; or None."""
    path = Path(run_dir) / CLASS_WEIGHTS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_class_weights(run_dir, class_weighting: str, weights, class_names) -> None:
    """Saves the loss weights of a run (resuming reuses them) with its class names."""
    atomic_write_text(Path(run_dir) / CLASS_WEIGHTS_FILE, json.dumps(
        {"class_weighting": class_weighting, "weights": [float(w) for w in np.asarray(weights)],
         "classes": [str(n) for n in class_names]}, indent=1))
