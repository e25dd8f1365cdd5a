"""Where and how TensorFlow runs: threads, GPU memory, deterministic kernels.

Training, export and prediction open their sessions with
:func:`session_config`; :func:`device_report` is the line a run prints first;
:func:`enable_determinism` switches on TensorFlow's deterministic GPU kernels
for the length of a run.
"""
from __future__ import annotations

import contextlib
import os

from segnet_lib._tf import GPUS, tf, tf2

try:
    # TF2-only internals, guarded: TF 1.15 takes the TF_DETERMINISTIC_OPS
    # environment variable instead (see enable_determinism).
    from tensorflow.python.framework import config as tf_config  # tf115-fence: allow
except ImportError:  # pragma: no cover - very old TensorFlow
    tf_config = None

__all__ = ["cpu_count", "session_config", "device_report", "enable_determinism"]


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def session_config() -> "tf.ConfigProto":
    """Session options: all CPU cores, GPU memory allocated as needed."""
    cores = cpu_count()
    config = tf.ConfigProto(intra_op_parallelism_threads=cores,
                            inter_op_parallelism_threads=cores, allow_soft_placement=True)
    # Grow GPU memory on demand instead of taking the whole card at start.
    config.gpu_options.allow_growth = True
    return config


def device_report() -> str:
    """One line saying where training runs (printed at the start of a run)."""
    if GPUS:
        names = []
        for gpu in GPUS:
            try:
                details = tf2.config.experimental.get_device_details(gpu)
                names.append(details.get("device_name", gpu.name))
            except (AttributeError, ValueError):
                names.append(gpu.name)
        return f"Training on {len(GPUS)} GPU(s): {', '.join(names)} (memory growth on)"
    return f"Training on the CPU with {cpu_count()} threads (no GPU visible)"


@contextlib.contextmanager
def enable_determinism(enabled: bool = True):
    """Context manager: TensorFlow's deterministic GPU kernels while it is open.

    On a CPU nothing needs switching on: the kernels this model uses (oneDNN
    convolutions, fused batch norm, the pooling gradients, Adam/momentum)
    already give bit-identical results run after run, given the seeds and the
    data order that :func:`segnet_lib.train.train` fixes (``tests/test_train.py``
    checks it). TensorFlow's op determinism would even cost CPU time there: it
    turns the input pipeline's parallel ``map`` of a ``numpy_function`` into a
    sequential one.

    On a GPU, cuDNN picks convolution algorithms and reduction orders that
    vary between runs; TF >= 2.8's ``enable_op_determinism()`` (which also
    works in graph mode) makes them fixed. It is process-wide, and while on
    it refuses graphs with unseeded random ops, so it is switched off again on
    exit. TF 2.1-2.7, and NVIDIA's builds of 1.15, read the
    ``TF_DETERMINISTIC_OPS`` environment variable instead.

    Args:
        enabled: False makes this a no-op (for ``with enable_determinism(flag):``).

    Yields:
        Whether op determinism is on inside the block.
    """
    if not (enabled and GPUS):
        yield False
        return
    enable = getattr(tf2.config.experimental, "enable_op_determinism", None)
    if enable is None or tf_config is None or not hasattr(tf_config, "disable_op_determinism"):
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        yield True
        return
    was_on = tf_config.is_op_determinism_enabled()
    enable()
    try:
        yield True
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
