"""Process-wide set-up shared by notebooks, the CLI and the tests."""
from __future__ import annotations

import logging
import random
from typing import NamedTuple

import numpy as np


class SetupInfo(NamedTuple):
    """What :func:`setup` found.

    Attributes:
        tf_version: the installed TensorFlow version string.
        gpus: names of the GPUs TensorFlow can see (empty on a CPU machine).
        seed: the seed given to NumPy, Python and the default TF graph.
    """

    tf_version: str
    gpus: tuple
    seed: int

    @property
    def device(self) -> str:
        """``'GPU'`` when TensorFlow sees one, else ``'CPU'``."""
        return "GPU" if self.gpus else "CPU"


def set_seed(seed: int) -> None:
    """Seeds Python, NumPy and the current default TF graph.

    A graph created later (``with tf.Graph().as_default():``) has no seed of its
    own; builders that make a new graph call this again inside it.

    Args:
        seed: a non-negative integer.
    """
    from segnet_lib._tf import tf

    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)


def setup(seed: int = 0, verbose: bool = True) -> SetupInfo:
    """Prepares TensorFlow for the TF1 graph API used throughout the book.

    Disables eager execution, quiets TensorFlow's Python logging, turns on GPU
    memory growth (so a notebook does not grab the whole card), seeds NumPy,
    Python and the default graph, and reports whether a GPU is visible.

    Args:
        seed: seed for NumPy, Python's ``random`` and the default TF graph.
        verbose: print a one-line summary.

    Returns:
        A :class:`SetupInfo`.
    """
    from segnet_lib._tf import GPUS as gpus
    from segnet_lib._tf import tf, tf2

    tf.disable_eager_execution()
    tf2.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for gpu in gpus:
        try:
            tf2.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised by an earlier session
            pass
    set_seed(seed)
    info = SetupInfo(tf2.__version__, tuple(g.name for g in gpus), seed)
    if verbose:
        where = f"{len(gpus)} GPU(s)" if gpus else "CPU only (no GPU visible)"
        print(f"TensorFlow {info.tf_version}, graph mode, seed {seed}, {where}")
    return info
