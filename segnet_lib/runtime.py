"""Where and how TensorFlow runs: threads, GPU memory, precision, XLA, deterministic kernels.

Training, export and prediction open their sessions with
:func:`session_config`; :func:`device_report` is the line a run prints first;
:func:`enable_determinism` switches on TensorFlow's deterministic GPU kernels
for the length of a run.

Mixed precision is TensorFlow's graph rewrite (grappler), switched on per
session here rather than process-wide: ``'mixed_float16'`` turns on
``auto_mixed_precision`` (float16 compute on NVIDIA GPUs of compute capability
7.0 or newer; the training step adds dynamic loss scaling, see
:func:`segnet_lib.losses.make_optimizer`), ``'mixed_bfloat16'`` the oneDNN
bfloat16 rewrite for CPUs with AVX512_BF16 or AMX-BF16
(:func:`cpu_bfloat16_flags`). Variables, the loss and the optimiser's update
stay float32 in both.
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

__all__ = ["cpu_count", "session_config", "device_report", "enable_determinism", "PRECISIONS",
           "cpu_bfloat16_flags", "check_precision"]

#: Compute precisions of a training run (``TrainConfig.precision``).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# /proc/cpuinfo flags of CPUs that compute in bfloat16 natively (oneDNN uses them).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_count() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def cpu_bfloat16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple:
    """The bfloat16 instruction sets of this CPU among ``avx512_bf16`` and ``amx_bf16``.

    Intel Cooper Lake and later Xeons (AVX512_BF16), Sapphire Rapids and later
    (also AMX), AMD Zen 4 and later (AVX512_BF16) have them. Without either,
    oneDNN emulates bfloat16 and ``'mixed_bfloat16'`` is slower than float32.

    Returns:
        The flags found, in :data:`BFLOAT16_CPU_FLAGS` order (empty where the
        file is missing, e.g. on macOS).
    """
    try:
        with open(cpuinfo) as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
    except OSError:
        return ()
    return tuple(flag for flag in BFLOAT16_CPU_FLAGS if flag in flags)


def _require_known(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")


def check_precision(precision: str) -> None:
    """Refuses a precision this machine cannot compute in (ValueError naming why).

    ``'mixed_float16'`` runs anywhere (without a GPU the session emulates
    float16 rounding on the CPU, slowly: for checking numerics only);
    ``'mixed_bfloat16'`` needs a CPU with AVX512_BF16 or AMX-BF16.
    """
    _require_known(precision)
    if precision == "mixed_bfloat16" and not cpu_bfloat16_flags():
        raise ValueError(
            "precision 'mixed_bfloat16' needs a CPU with AVX512_BF16 or AMX-BF16 (Intel Cooper "
            "Lake / Sapphire Rapids or later, AMD Zen 4 or later); this CPU has neither in "
            "/proc/cpuinfo, so oneDNN would emulate bfloat16 more slowly than float32")


def session_config(precision: str = "float32", xla: bool = False) -> "tf.ConfigProto":
    """Session options: all CPU cores, GPU memory allocated as needed, precision, XLA.

    Args:
        precision: one of :data:`PRECISIONS`; the mixed ones turn on
            TensorFlow's graph rewrite for this session only.
        xla: compile clusters of the graph with XLA (auto-clustering on GPU and
            CPU; ops XLA cannot compile, such as the argmax pooling, stay
            TensorFlow kernels).
    """
    _require_known(precision)
    cores = cpu_count()
    config = tf.ConfigProto(intra_op_parallelism_threads=cores,
                            inter_op_parallelism_threads=cores, allow_soft_placement=True)
    # Grow GPU memory on demand instead of taking the whole card at start.
    config.gpu_options.allow_growth = True
    rewrite = config.graph_options.rewrite_options
    if precision == "mixed_float16":
        rewrite.auto_mixed_precision = rewrite.ON
        if not GPUS:
            # The GPU rewrite only touches GPU ops; on a CPU, TF >= 2.9 can
            # emulate it (float16 rounding of each op's inputs and outputs).
            _set_rewrite(rewrite, "auto_mixed_precision_cpu", "float16 emulation on the CPU")
    elif precision == "mixed_bfloat16":
        _set_rewrite(rewrite, "auto_mixed_precision_onednn_bfloat16", "the oneDNN bfloat16 rewrite")
    if xla:
        jit = config.graph_options.optimizer_options
        jit.global_jit_level = tf.OptimizerOptions.ON_1
        if "cpu_global_jit" in jit.DESCRIPTOR.fields_by_name:
            jit.cpu_global_jit = True  # TF 2.x: also cluster ops placed on the CPU
    return config


def _set_rewrite(rewrite, field: str, what: str) -> None:
    # TF 1.15's RewriterConfig lacks the newer rewrites: say so instead of an AttributeError.
    if field not in rewrite.DESCRIPTOR.fields_by_name:
        raise ValueError(f"this TensorFlow ({tf2.__version__}) has no {what} ({field}); "
                         "TensorFlow >= 2.9 has it")
    setattr(rewrite, field, rewrite.ON)


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
