"""The one place the library imports TensorFlow.

``from segnet_lib._tf import tf`` gives ``tensorflow.compat.v1`` (the TF1 graph
API the book teaches). The first import happens with the process's standard
error sent to /dev/null: TensorFlow's CUDA probe writes C++ log lines such as
"Could not find cuda drivers" straight to file descriptor 2, bypassing
``TF_CPP_MIN_LOG_LEVEL``, and Jupyter kernels forward that descriptor into
notebook outputs, which nbval compares. Python exceptions are unaffected.

Memory: TensorFlow's oneDNN build hands every tensor to its own allocator,
which keeps large freed blocks in a pool (a BFC allocator) that only grows; on
the full SegNet training step that pool held about 225 MB more at the peak
than the system allocator (book/benchmarks.md). ``SEGNET_ALLOCATOR=system`` in
the environment, before the first import, makes TensorFlow use the system
allocator (``TF_ONEDNN_USE_SYSTEM_ALLOCATOR``) and asks glibc to map blocks of
1 MB and more directly, so that a freed activation goes back to the operating
system at once (glibc's default raises that threshold as blocks are freed, up
to 32 MB, and then keeps them). It is not the default: every step then maps
and faults in its activations afresh, which made the step 14% slower on the
benchmark's CPU. bench_train.py measures both.
"""
from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: ``'tensorflow'`` (default) or ``'system'``: see the module docstring.
ALLOCATOR = os.environ.get("SEGNET_ALLOCATOR", "tensorflow")
if ALLOCATOR not in ("tensorflow", "system"):
    raise ValueError(f"$SEGNET_ALLOCATOR must be 'tensorflow' or 'system', got {ALLOCATOR!r}")
# glibc's mallopt parameter number of the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


def _use_system_allocator() -> None:
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc (e.g. musl): its own policy applies
        pass


if ALLOCATOR == "system":
    _use_system_allocator()

#: Set to ``0`` (before graphs are built) to build them as plain TensorFlow
#: would, without the memory savings of :func:`lean_memory`.
LEAN_MEMORY_ENV = "SEGNET_LEAN_MEMORY"


def lean_memory() -> bool:
    """Whether graphs are built to train in less memory (``$SEGNET_LEAN_MEMORY``, default 1).

    Five changes of what a training step keeps, or when it makes it, none of
    what it computes (tests check that the gradients and updates are the
    plain graph's), measured in ``benchmarks/bench_train.py``:

    * ``segnet_lib.layers.conv`` recomputes batch norm and ReLU (and a SegNet
      decoder's unpooling after them) in the backward pass instead of
      keeping their output;
    * an encoder pool that reads a ReLU takes the gradient of both from the
      pooled values and the indices (``segnet_lib.unpool``);
    * the training step adds each kernel's weight-decay gradient once its
      data gradient exists, not at the start of the backward pass
      (``segnet_lib.step``);
    * the fused unpooling writes into an uninitialised buffer instead of
      zeros that the graph optimiser folds into constants kept by the
      session (``segnet_lib.unpool``);
    * the optimiser's slots start as zeros made at run time, not as folded
      constants that the session keeps beside them (``segnet_lib.losses``).

    ``0`` builds TensorFlow's plain gradients, ``tf.zeros`` and the stock
    optimisers: the library before issue 18, for comparison.

    Raises:
        ValueError: for a value other than 0 or 1.
    """
    value = os.environ.get(LEAN_MEMORY_ENV, "1")
    if value not in ("0", "1"):
        raise ValueError(f"${LEAN_MEMORY_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


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

__all__ = ["tf", "tf2", "GPUS", "ALLOCATOR", "LEAN_MEMORY_ENV", "lean_memory"]
