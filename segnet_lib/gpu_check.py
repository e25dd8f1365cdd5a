"""The GPU check: the full SegNet's speed and memory on your machine, beside the paper's Table 6.

``make gpu-check`` (or ``python -m segnet_lib gpu-check``) times the training
step of :func:`segnet_lib.step.training_step` (the full 29.5M-parameter SegNet,
class-weighted cross-entropy, weight decay, SGD with momentum, batch-norm
updates) on random 360x480 images, at batch 1 and 4, in float32 and in mixed
precision, with XLA off and on, each configuration in its own child process so
that one's memory peak does not hide another's. It prints one table beside the
paper's figures (Badrinarayanan et al. 2017, Table 6, an NVIDIA Titan: forward
422.5 ms, backward 488.7 ms, training memory 6,803 MB). No GPU that runs
TensorFlow was available to this project: those figures are for you to
produce. ``--smoke`` runs the same code on a CPU at a tiny size (a test does).

Columns: forward is the mean time of a forward pass (logits only); step is
forward + backward + update; backward is their difference (the paper's
backward also excludes the forward); images/s is batch / step. Memory is the
peak of TensorFlow's GPU allocator, or on a CPU the process's peak resident
memory (which includes TensorFlow itself, about 0.6 GB).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import NamedTuple

import numpy as np

from segnet_lib._setup import set_seed
from segnet_lib._tf import GPUS, tf, tf2
from segnet_lib.config import TrainConfig
from segnet_lib.memory import peak_rss_bytes
from segnet_lib.runtime import check_precision, cpu_bfloat16_flags, session_config
from segnet_lib.step import training_step

__all__ = ["PAPER_TABLE6", "Check", "checks", "measure", "run_checks", "format_table"]

#: The paper's Table 6 (SegNet, NVIDIA Titan, 360x480 input).
PAPER_TABLE6 = {"forward_ms": 422.5, "backward_ms": 488.7, "memory_mb": 6803.0}
NUM_CLASSES = 21


class Check(NamedTuple):
    """One configuration to measure."""

    batch: int
    precision: str
    xla: bool
    size: tuple = (360, 480)
    width: float = 1.0
    steps: int = 10


def checks(smoke: bool = False) -> list:
    """The configurations: batch 1 and 4, float32 and mixed precision, XLA off and on.

    The mixed precision is float16 on a GPU, bfloat16 on a CPU that has it
    (else float16, emulated: slow, for numerics only). ``smoke``: batch 1, a
    64x64 image and a SegNet of 1/8 the width, 2 steps.
    """
    mixed = "mixed_float16" if GPUS or not cpu_bfloat16_flags() else "mixed_bfloat16"
    batches = (1,) if smoke else (1, 4)
    extra = dict(size=(64, 64), width=0.125, steps=2) if smoke else {}
    return [Check(b, p, x, **extra) for b in batches for p in ("float32", mixed)
            for x in (False, True)]


def _peak_memory_mb() -> float:
    if GPUS:
        return tf2.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
    return peak_rss_bytes() / 2 ** 20


def measure(check: Check) -> dict:
    """Times one configuration in this process (call it in a fresh one: memory is a peak).

    Returns:
        ``forward_ms``, ``step_ms``, ``backward_ms``, ``images_per_s``, ``memory_mb``.
    """
    check_precision(check.precision)
    config = TrainConfig(width_multiplier=check.width, batch_size=check.batch,
                         precision=check.precision, xla=check.xla)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (check.batch, *check.size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (check.batch, *check.size)).astype(np.int32)
    graph = tf.Graph()
    with graph.as_default():
        set_seed(0)
        step = training_step(config, tf.constant(images), tf.constant(labels), NUM_CLASSES,
                             np.ones(NUM_CLASSES, np.float32))
        init = tf.global_variables_initializer()
    times = {"forward": [], "step": []}
    with tf.Session(graph=graph, config=session_config(check.precision, check.xla)) as sess:
        sess.run(init)
        # Warm-up: graph rewrites, XLA compilation, kernel selection.
        sess.run(step.logits.op)
        sess.run(step.train_op)
        for _ in range(check.steps):
            for name, fetch in (("forward", step.logits.op), ("step", step.train_op)):
                start = time.perf_counter()
                sess.run(fetch)
                times[name].append(time.perf_counter() - start)
    forward, full = 1000 * np.mean(times["forward"]), 1000 * np.mean(times["step"])
    return {"forward_ms": forward, "step_ms": full, "backward_ms": full - forward,
            "images_per_s": check.batch / (full / 1000), "memory_mb": _peak_memory_mb()}


def run_checks(selected, timeout: float = 3600) -> list:
    """Measures each :class:`Check` in a child process; returns ``[(check, result or error)]``."""
    results = []
    for check in selected:
        command = [sys.executable, "-m", "segnet_lib", "gpu-check", "--child",
                   json.dumps(check._asdict())]
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            results.append((check, json.loads(lines[-1])))
        else:
            results.append((check, (out.stderr.strip().splitlines() or ["failed"])[-1]))
    return results


def format_table(results) -> str:
    """The table of :func:`run_checks`' results, with the paper's row first."""
    device = "GPU: " + GPUS[0].name if GPUS else "CPU (no GPU visible)"
    memory = "GPU peak MB" if GPUS else "peak RSS MB"
    head = (f"{'':32s} {'batch':>5s} {'forward ms':>11s} {'backward ms':>12s} {'step ms':>9s} "
            f"{'images/s':>9s} {memory:>12s}")
    paper = PAPER_TABLE6
    lines = [f"Full SegNet training on {device}, TensorFlow {tf2.__version__}", head,
             f"{'paper, Table 6 (NVIDIA Titan)':32s} {'':>5s} {paper['forward_ms']:11.1f} "
             f"{paper['backward_ms']:12.1f} {'':>9s} {'':>9s} {paper['memory_mb']:12,.0f}"]
    for check, result in results:
        name = f"{check.precision}, XLA {'on' if check.xla else 'off'}, {check.size[0]}x{check.size[1]}"
        if isinstance(result, str):
            lines.append(f"{name:32s} {check.batch:5d} failed: {result}")
            continue
        lines.append(f"{name:32s} {check.batch:5d} {result['forward_ms']:11.1f} "
                     f"{result['backward_ms']:12.1f} {result['step_ms']:9.1f} "
                     f"{result['images_per_s']:9.2f} {result['memory_mb']:12,.0f}")
    return "\n".join(lines)
