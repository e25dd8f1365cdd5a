"""Measured memory: the peak resident memory of inference and of a training step.

:func:`segnet_lib.study.decoder_state` counts what a decoder keeps from its
encoder, read off the graph. This module measures what running the whole model
takes: :func:`measure_memory` runs one model config, in one mode
(``'inference'``: the softmax of one batch, as the exported Predictor computes
it; ``'train'``: the loss, the gradients and one update of SGD with momentum,
the paper's optimiser, with batch-norm updates) at one size and batch, in a
fresh child process (``python -m segnet_lib.memory``), and reports that
process's peak resident set size (on Linux ``VmHWM`` of its own address space,
read from ``/proc/self/status``; elsewhere ``getrusage``'s ``ru_maxrss``).

Why the peak RSS of a child, and not TensorFlow's allocator statistics: on the
CPU the allocator keeps none unless asked at start-up
(``tf.config.experimental.get_memory_info('CPU:0')`` answers zeros), the TF1
session API has no call for them, and oneDNN allocates some of its scratch
memory outside them. The peak RSS counts every page the process touched (the
TensorFlow runtime, the graph, the weights, the activations, oneDNN's buffers),
and a fresh process per measurement keeps one model's high-water mark from
hiding the next one's (a high-water mark never goes down). Not ``ru_maxrss``
on Linux: at ``exec`` the kernel carries the old address space's high-water
mark into it, and Python starts a child by ``vfork`` (the parent's address
space) then ``exec``, so the child's ``ru_maxrss`` is at least the parent's
peak (a notebook or a test process that trained a model first would inflate
every measurement). To separate the
model's run from the runtime, the child also reads its resident memory just
before the first run (after import, graph construction and variable
initialisation): ``run_bytes = peak_rss_bytes - base_rss_bytes`` is what
running the model adds (activations, gradients, workspaces).

The numbers depend on the machine: the thread count (per-thread buffers),
oneDNN's kernels (by instruction set) and the allocator's caching.
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from segnet_lib import model, unet
from segnet_lib._setup import setup
from segnet_lib._tf import tf
from segnet_lib.losses import segmentation_loss
from segnet_lib.runtime import session_config

__all__ = ["MODES", "MEMORY_COLUMNS", "peak_rss_bytes", "measure_memory", "memory_table", "run_measurement",
           "config_to_dict", "config_from_dict", "main"]

MODES = ("inference", "train")
#: Columns of :func:`memory_table` (besides the model's name), in order.
MEMORY_COLUMNS = ("mode", "batch_size", "height", "width", "params", "peak_rss_bytes",
                  "base_rss_bytes", "run_bytes", "step_seconds", "seconds")

# Model configs a child can rebuild, by class name.
_CONFIG_TYPES = {cls.__name__: cls for cls in (model.SegNetConfig, unet.UNetConfig)}


def config_to_dict(config) -> dict:
    """A model config as JSON-ready ``{'type': class name, 'fields': {...}}``."""
    if type(config).__name__ not in _CONFIG_TYPES:
        raise ValueError(f"config must be one of {sorted(_CONFIG_TYPES)}, got "
                         f"{type(config).__name__}")
    return {"type": type(config).__name__, "fields": dataclasses.asdict(config)}


def config_from_dict(values: Mapping):
    """Inverse of :func:`config_to_dict` (the config checks its fields again)."""
    kind = _CONFIG_TYPES.get(values.get("type"))
    if kind is None:
        raise ValueError(f"unknown model config type {values.get('type')!r}; expected one of "
                         f"{sorted(_CONFIG_TYPES)}")
    return kind(**values["fields"])


def peak_rss_bytes() -> int:
    """This address space's peak resident memory (Linux: VmHWM); else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _current_rss_bytes() -> int:
    """Resident memory now (Linux: /proc/self/statm); elsewhere the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def _check(mode, batch_size, image_size, num_classes, steps):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {MODES}")
    for name, value in (("batch_size", batch_size), ("num_classes", num_classes),
                        ("steps", steps), ("image height", image_size[0]),
                        ("image width", image_size[1])):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def run_measurement(spec: Mapping) -> dict:
    """Builds and runs one model in THIS process; returns its memory (the child's work).

    Call it in a fresh process (:func:`measure_memory` does): the peak is the
    process's high-water mark since it started.

    Args:
        spec: ``config`` (:func:`config_to_dict`), ``num_classes``,
            ``image_size`` ``[height, width]``, ``batch_size``, ``mode``,
            ``steps`` (runs of the fetch; the first also optimises the graph).

    Returns:
        ``params``, ``base_rss_bytes`` (resident before the first run),
        ``peak_rss_bytes`` (the process's peak), ``run_bytes`` (their
        difference, at least 0) and ``step_seconds`` (median wall time of a run
        after the first).
    """
    config = config_from_dict(spec["config"])
    height, width = (int(v) for v in spec["image_size"])
    batch, num_classes, mode = int(spec["batch_size"]), int(spec["num_classes"]), spec["mode"]
    steps = int(spec.get("steps", 2))
    _check(mode, batch, (height, width), num_classes, steps)
    setup(seed=0, verbose=False)
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [batch, height, width, 3], name="images")
        feed = {images: rng.normal(0.0, 50.0, (batch, height, width, 3)).astype(np.float32)}
        if mode == "train":
            labels = tf.placeholder(tf.int32, [batch, height, width], name="labels")
            feed[labels] = rng.integers(0, num_classes, (batch, height, width), dtype=np.int32)
            logits, _ = model.build(images, num_classes, True, config)
            loss = segmentation_loss(logits, labels, num_classes)
            reg = tf.losses.get_regularization_losses()
            if reg:
                loss = loss + tf.add_n(reg)
            # The paper's optimiser: one momentum slot per weight (Adam would keep two).
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                fetch = tf.train.MomentumOptimizer(1e-3, 0.9).minimize(loss)
        else:
            logits, _ = model.build(images, num_classes, False, config)
            fetch = tf.nn.softmax(logits)
        params = model.count_parameters(graph=graph)
        init = tf.global_variables_initializer()
    graph.finalize()
    times = []
    with tf.Session(graph=graph, config=session_config()) as sess:
        sess.run(init)
        base = _current_rss_bytes()
        for _ in range(steps):
            began = time.perf_counter()
            sess.run(fetch, feed)
            times.append(time.perf_counter() - began)
        peak = peak_rss_bytes()
    return {"params": params, "base_rss_bytes": base, "peak_rss_bytes": peak,
            "run_bytes": max(0, peak - base),
            "step_seconds": float(np.median(times[1:] if len(times) > 1 else times))}


def measure_memory(model_config, num_classes: int, image_size=(360, 480), batch_size: int = 1,
                   mode: str = "inference", steps: int = 2, timeout: Optional[float] = None) -> dict:
    """Peak memory of running one model, measured in a child process.

    Args:
        model_config: a :class:`segnet_lib.model.SegNetConfig` or
            :class:`segnet_lib.unet.UNetConfig`.
        num_classes: output classes.
        image_size: ``(height, width)`` (the paper: CamVid's 360x480).
        batch_size: images per run.
        mode: ``'inference'`` or ``'train'`` (see the module docstring).
        steps: runs in the child (at least 2 gives a step time past the
            first, which also optimises the graph).
        timeout: seconds before the child is killed (None: no limit).

    Returns:
        A dict with :data:`MEMORY_COLUMNS`: the inputs, ``params``,
        ``peak_rss_bytes``, ``base_rss_bytes``, ``run_bytes`` and
        ``step_seconds`` (see :func:`run_measurement`), and ``seconds``, the
        child's whole wall time (TensorFlow's import included).

    Raises:
        ValueError: a bad argument (before any child starts).
        RuntimeError: the child failed; the message ends with its last error lines.
        subprocess.TimeoutExpired: the child ran past ``timeout``.
    """
    image_size = tuple(image_size)
    _check(mode, batch_size, image_size, num_classes, steps)
    spec = {"config": config_to_dict(model_config), "num_classes": int(num_classes),
            "image_size": [int(v) for v in image_size], "batch_size": int(batch_size),
            "mode": mode, "steps": int(steps)}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "segnet_lib.memory", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - began
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"measure_memory: the child measuring {type(model_config).__name__} "
                           f"({mode}, batch {batch_size}, {image_size[0]}x{image_size[1]}) exited "
                           f"with status {done.returncode}:\n{tail}")
    result = json.loads(lines[-1])
    return {"mode": mode, "batch_size": int(batch_size), "height": int(image_size[0]),
            "width": int(image_size[1]), **result, "seconds": seconds}


def memory_table(model_configs: Mapping[str, object], num_classes: int, image_size=(360, 480),
                 batch_sizes: Sequence[int] = (1, 4), modes: Sequence[str] = MODES,
                 log=None, **kwargs) -> pd.DataFrame:
    """:func:`measure_memory` for several models, modes and batch sizes, one child each.

    Args:
        model_configs: name -> model config.
        num_classes: output classes.
        image_size: ``(height, width)``.
        batch_sizes: batch sizes to measure.
        modes: a subset of :data:`MODES`.
        log: ``fn(message)`` called after each measurement, or None.
        **kwargs: passed on to :func:`measure_memory` (``steps``, ``timeout``).

    Returns:
        A DataFrame, one row per measurement: ``model`` and :data:`MEMORY_COLUMNS`.
    """
    rows = []
    for name, config in model_configs.items():
        for mode in modes:
            for batch in batch_sizes:
                row = {"model": name, **measure_memory(config, num_classes, image_size, batch, mode,
                                                       **kwargs)}
                rows.append(row)
                if log is not None:
                    log(f"{name} {mode} batch {batch}: peak {row['peak_rss_bytes'] / 2**20:.0f} MiB, "
                        f"run {row['run_bytes'] / 2**20:.0f} MiB ({row['seconds']:.0f} s)")
    return pd.DataFrame(rows, columns=["model", *MEMORY_COLUMNS])


def main(argv=None) -> int:
    """The child's entry: ``python -m segnet_lib.memory SPEC_JSON`` prints one JSON line."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m segnet_lib.memory SPEC_JSON (see segnet_lib.memory.run_measurement)",
              file=sys.stderr)
        return 2
    print(json.dumps(run_measurement(json.loads(argv[0]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
