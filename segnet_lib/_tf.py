"""The one place the library imports TensorFlow.

``from segnet_lib._tf import tf`` gives ``tensorflow.compat.v1`` (the TF1 graph
API the book teaches). The first import happens with the process's standard
error sent to /dev/null: TensorFlow's CUDA probe writes C++ log lines such as
"Could not find cuda drivers" straight to file descriptor 2, bypassing
``TF_CPP_MIN_LOG_LEVEL``, and Jupyter kernels forward that descriptor into
notebook outputs, which nbval compares. Python exceptions are unaffected.
"""
from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _stderr_fd_silenced():
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _stderr_fd_silenced():
    import tensorflow as tf2

    # Device discovery (and its cuInit error on GPU-less machines) happens here,
    # once, instead of at the first Session.
    GPUS = tuple(tf2.config.list_physical_devices("GPU"))

import tensorflow.compat.v1 as tf  # noqa: E402

__all__ = ["tf", "tf2", "GPUS"]
