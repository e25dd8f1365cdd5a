"""Training SegNet: the loss, the optimiser, the loop, checkpoints and export.

One call trains (or resumes) a run::

    config = TrainConfig(data="sample", variant="segnet", steps=2000)
    history = train(config, "runs/first")   # pandas DataFrame, also history.csv

A *run folder* holds everything about one run, so rerunning the same command
continues where it stopped::

    runs/first/
      config.json              the TrainConfig (checked on resume)
      class_weights.json       the loss weights, computed once
      history.csv              one row per logged step (see HISTORY_COLUMNS)
      checkpoint               TensorFlow's checkpoint state (latest + kept ones)
      best_checkpoint          the same for the best validation mIoU
      ckpt-00000500/           one folder per checkpoint: model.index,
                               model.data-*, meta.json, history.csv
      train/events.out...      TensorBoard summaries
      export/                  the frozen inference graph (see export_model)

Why a folder per checkpoint: it is written under a temporary name and renamed
into place in one atomic step, so a crash or ``kill -9`` mid-write leaves the
earlier checkpoints intact and never a half-written one that looks complete.
The last ``keep_last`` checkpoints are kept, plus the one with the best
validation mean IoU.

The loop restores the global step, the optimiser's slots (momentum, Adam
moments), the learning rate (a function of the step) and the history from the
newest checkpoint; the input pipeline starts at the next batch without reading
the ones already seen (``data.make_dataset(start_batch=...)``), so with
``deterministic=True`` a resumed run follows the same curve as one that was
never interrupted. Ctrl-C (SIGINT) or SIGTERM saves a checkpoint and then
stops; a NaN or infinite loss stops with a message naming the step and leaves
the last good checkpoint as the newest one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from segnet_lib._tf import GPUS, tf, tf2

__all__ = [
    "TrainConfig", "train", "segmentation_loss", "pixel_accuracy", "learning_rate_schedule",
    "make_optimizer", "open_datasets", "read_history", "read_config", "latest_checkpoint",
    "best_checkpoint", "export_model", "Predictor", "load_predictor", "sample_recipe",
    "sample_checkpoint", "sample_run_dir", "session_config", "device_report", "enable_determinism",
    "TrainingDiverged", "HISTORY_COLUMNS", "training_step", "TrainingStep", "RESUMABLE_FIELDS",
    "voc_gpu_recipe", "check_run_dir",
]

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
CLASS_WEIGHTS_FILE = "class_weights.json"
CHECKPOINT_DIR_PREFIX = "ckpt-"
CHECKPOINT_BASENAME = "model"
META_FILE = "meta.json"
BEST_STATE_FILE = "best_checkpoint"
EXPORT_DIR = "export"
FROZEN_GRAPH_FILE = "frozen_graph.pb"
EXPORT_INFO_FILE = "export.json"
SUMMARY_DIR = "train"
_LOCK_FILE = ".lock"
_DONE_FILE = ".complete"

#: Columns of the history table, in order. ``val_*`` are NaN except on
#: validation steps; ``loss`` and ``pixel_accuracy`` are means over the steps
#: since the previous row.
HISTORY_COLUMNS = (
    "step", "epoch", "loss", "pixel_accuracy", "learning_rate", "images_per_second",
    "elapsed_seconds", "val_loss", "val_pixel_accuracy", "val_class_accuracy", "val_mean_iou",
)

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "poly")
CLASS_WEIGHTING = ("median_frequency", "none")
EXPORT_FORMATS = ("frozen", "saved_model")

#: Fields that may differ between the saved config and a rerun: they change how
#: the loop reports and saves, not what it computes (``steps`` may grow to train
#: longer, unless the learning rate schedule depends on it).
RESUMABLE_FIELDS = ("steps", "log_every", "val_every", "val_images", "checkpoint_every",
                     "keep_last", "summary_every")


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the message names the step."""


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a run; saved as ``config.json`` in the run folder.

    Change fields with :meth:`replace`. The defaults are the paper's recipe
    (SGD, momentum 0.9, weight decay 5e-4, fixed learning rate, median-frequency
    class balancing) at a size that fits one GPU.

    Attributes:
        data: ``'sample'`` (the generated sample data), a VOC root folder
            (``JPEGImages``, ``SegmentationClass``, ``ImageSets/Segmentation``), or
            an RLE CSV (Kaggle style, see :class:`segnet_lib.voc.CSVSegmentation`).
        train_split, val_split: split lists of a VOC-layout folder.
        image_dir: the images of a CSV (default: ``JPEGImages`` next to the
            CSV if it exists, else the CSV's folder).
        rle_order: pixel order of a CSV's RLE strings, ``'C'`` or ``'F'``.
        val_csv: a second CSV with the validation masks; without it a CSV run
            holds out ``val_fraction`` of its ids (chosen with ``seed``).
        val_fraction: share of a CSV's ids held out for validation.
        variant: ``'segnet'``, ``'segnet_basic'`` or ``'bayesian'``.
        width_multiplier: scales every layer's features (0.25 trains on a CPU).
        dropout_rate: the Bayesian variant's dropout probability.
        model_options: further :class:`segnet_lib.model.SegNetConfig` fields,
            e.g. ``{"decoder": "unpool", "batch_norm_decay": 0.9}``.
        vgg16_weights: path of VGG16 ImageNet weights for the encoder (see
            :func:`segnet_lib.weights.load_vgg16`); None trains from scratch.
        crop_size: ``(height, width)`` of the training crops.
        batch_size: images per step.
        min_scale, max_scale: random rescaling range before cropping.
        flip: random horizontal flips.
        resize_to: resize every image to ``(height, width)`` first (None: keep).
        cache_images: keep decoded images in memory (small datasets only).
        optimizer: ``'sgd'`` (momentum) or ``'adam'``.
        learning_rate: the initial (and, for ``'constant'``, only) rate.
        lr_schedule: ``'constant'`` or ``'poly'``:
            ``lr * (1 - step / steps) ** lr_power`` (DeepLab's schedule).
        lr_power: exponent of the poly schedule.
        momentum: SGD momentum (the paper: 0.9).
        weight_decay: L2 factor on convolution kernels (the paper: 5e-4).
        class_weighting: ``'median_frequency'`` (the paper) or ``'none'``.
        steps: total training steps (global step at which training stops).
        log_every: steps per history row.
        val_every: steps between validations (each followed by a checkpoint).
        val_images: validate on the first N validation images (None: all).
        checkpoint_every: steps between checkpoints besides the validation ones.
        keep_last: checkpoints kept (plus the best one).
        summary_every: steps between TensorBoard scalar summaries.
        seed: seed of the graph, the data order and the augmentation.
        deterministic: on a GPU, switch on TensorFlow's deterministic kernels
            (somewhat slower), so the same seed, data and machine give the same
            loss curve. On a CPU runs are repeatable without it (see
            :func:`enable_determinism`).
    """

    data: str = "sample"
    train_split: str = "train"
    val_split: str = "val"
    image_dir: Optional[str] = None
    rle_order: Optional[str] = None
    val_csv: Optional[str] = None
    val_fraction: float = 0.1
    variant: str = "segnet"
    width_multiplier: float = 1.0
    dropout_rate: float = 0.5
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    vgg16_weights: Optional[str] = None
    crop_size: Tuple[int, int] = (224, 224)
    batch_size: int = 4
    min_scale: float = 0.75
    max_scale: float = 1.25
    flip: bool = True
    resize_to: Optional[Tuple[int, int]] = None
    cache_images: bool = False
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    class_weighting: str = "median_frequency"
    steps: int = 10000
    log_every: int = 10
    val_every: int = 500
    val_images: Optional[int] = None
    checkpoint_every: int = 500
    keep_last: int = 3
    summary_every: int = 10
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        # JSON gives lists; keep tuples so configs compare equal after a round trip.
        for name in ("crop_size", "resize_to"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        object.__setattr__(self, "model_options", dict(self.model_options or {}))
        self.validate()

    def validate(self) -> None:
        """Checks every field; raises ValueError naming the first bad one."""
        from segnet_lib import model

        def need(ok, message):
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

        need(isinstance(self.data, str) and self.data,
             f"data must be 'sample', a folder or a CSV, got {self.data!r}")
        need(self.variant in model.VARIANTS,
             f"variant={self.variant!r}; expected one of {model.VARIANTS}")
        need(self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}; expected one of {OPTIMIZERS}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule={self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        need(self.class_weighting in CLASS_WEIGHTING,
             f"class_weighting={self.class_weighting!r}; expected one of {CLASS_WEIGHTING}")
        need(self.rle_order in (None, "C", "F"), f"rle_order={self.rle_order!r}; expected 'C' or 'F'")
        for name in ("steps", "batch_size", "log_every", "val_every", "checkpoint_every",
                     "keep_last", "summary_every"):
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.val_images is None
             or (int(self.val_images) == self.val_images and self.val_images >= 1),
             f"val_images must be None or a positive integer, got {self.val_images!r}")
        need(math.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"learning_rate must be > 0, got {self.learning_rate!r}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(self.lr_power > 0, f"lr_power must be > 0, got {self.lr_power!r}")
        need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        need(self.width_multiplier > 0, f"width_multiplier must be > 0, got {self.width_multiplier!r}")
        need(0 < self.min_scale <= self.max_scale,
             f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        need(len(self.crop_size) == 2 and min(self.crop_size) >= 1,
             f"crop_size must be (height, width), got {self.crop_size!r}")
        need(isinstance(self.seed, (int, np.integer)) and self.seed >= 0,
             f"seed must be a non-negative integer, got {self.seed!r}")
        self.model_config()  # raises for bad model_options

    def replace(self, **changes) -> "TrainConfig":
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def model_config(self):
        """The :class:`segnet_lib.model.SegNetConfig` of this run."""
        from segnet_lib import model

        known = {f.name for f in dataclasses.fields(model.SegNetConfig)}
        unknown = sorted(set(self.model_options) - known)
        if unknown:
            raise ValueError(
                f"TrainConfig: model_options has unknown SegNetConfig fields {unknown}; "
                f"known: {sorted(known)}")
        options = dict(variant=self.variant, width_multiplier=self.width_multiplier,
                       dropout_rate=self.dropout_rate, weight_decay=self.weight_decay)
        options.update(self.model_options)
        return model.SegNetConfig(**options)

    def input_config(self, training: bool = True):
        """The :class:`segnet_lib.data.InputConfig` of the training (or validation) input."""
        from segnet_lib import data

        if not training:  # whole images, one at a time, as the paper evaluates
            return data.InputConfig(crop_size=None, batch_size=1, min_scale=1.0, max_scale=1.0,
                                    flip=False, seed=self.seed, resize_to=self.resize_to,
                                    num_parallel_calls=_cpu_count(), cache=self.cache_images)
        return data.InputConfig(
            crop_size=self.crop_size, batch_size=self.batch_size, min_scale=self.min_scale,
            max_scale=self.max_scale, flip=self.flip, seed=self.seed, resize_to=self.resize_to,
            num_parallel_calls=_cpu_count(), cache=self.cache_images)

    def to_dict(self) -> dict:
        """JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        for name in ("crop_size", "resize_to"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**values)

    def fingerprint(self) -> str:
        """Short hash of the fields that define what is computed (not the reporting)."""
        values = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_FIELDS}
        values["steps"] = self.steps
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def read_config(run_dir) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run folder.

    Raises:
        FileNotFoundError: the folder has no ``config.json``.
        ValueError: the file is not a valid config (the message names it).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid training config: {err}") from None


def _config_differences(saved: TrainConfig, new: TrainConfig) -> list:
    a, b = saved.to_dict(), new.to_dict()
    diffs = [k for k in a if a[k] != b[k] and k not in RESUMABLE_FIELDS]
    if saved.steps != new.steps and saved.lr_schedule == "poly":
        diffs.append("steps (the poly learning rate schedule depends on it)")
    return diffs


def check_run_dir(config: TrainConfig, out_dir) -> Optional[TrainConfig]:
    """Checks that ``out_dir`` is new, or a run of the same config (to resume).

    Returns:
        The saved config, or None for a new run.

    Raises:
        ValueError: ``out_dir`` holds a run with a different config (the
            message lists the differing fields), or is a non-empty folder that
            is not a run, or is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    if not (out_dir / CONFIG_FILE).exists():
        others = [p.name for p in out_dir.iterdir() if p.name != _LOCK_FILE] if out_dir.is_dir() else []
        if others:
            raise ValueError(
                f"{out_dir} is not empty and holds no {CONFIG_FILE} (found {sorted(others)[:5]}); "
                "choose a new folder for the run")
        return None
    saved = read_config(out_dir)
    diffs = _config_differences(saved, config)
    if diffs:
        fields = [k.split(" ")[0] for k in diffs]
        details = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in fields)
        raise ValueError(
            f"{out_dir} holds a run with a different config ({details}); rerun with the same "
            "options to resume it, or choose a new --out")
    return saved


# ---------------------------------------------------------------------------
# Loss, accuracy, learning rate, optimiser
# ---------------------------------------------------------------------------

def segmentation_loss(logits, labels, num_classes: int, class_weights=None,
                      ignore_label: int = 255):
    """Pixel-wise softmax cross-entropy, void pixels ignored, optionally class-weighted.

    ``loss = sum_i w[y_i] * xent_i / N`` over the ``N`` non-void pixels ``i``
    of the batch, the normalisation of Caffe's ``SoftmaxWithLoss`` that the
    SegNet authors used with class weights (so the weights change the balance
    between classes *and* the loss's scale). A batch with no labelled pixel
    gives 0.

    Args:
        logits: float32 ``[batch, height, width, num_classes]``.
        labels: int ``[batch, height, width]``: class ids, ``ignore_label`` = void.
        num_classes: ``C``.
        class_weights: None, or float ``[C]`` (e.g. median-frequency weights).
        ignore_label: the void value.

    Returns:
        A float32 scalar tensor.

    Raises:
        tf.errors.InvalidArgumentError (when run): a label that is neither a
            class id nor ``ignore_label``.
    """
    with tf.name_scope("segmentation_loss"):
        logits = tf.convert_to_tensor(logits)
        labels = tf.cast(labels, tf.int32)
        flat_logits = tf.reshape(logits, [-1, num_classes])
        flat_labels = tf.reshape(labels, [-1])
        valid = tf.not_equal(flat_labels, ignore_label)
        safe = tf.where(valid, flat_labels, tf.zeros_like(flat_labels))
        check = tf.debugging.assert_less(
            safe, num_classes,
            message=f"labels must be class ids in [0, {num_classes}) or {ignore_label} (void)")
        check_low = tf.debugging.assert_non_negative(safe, message="labels must not be negative")
        with tf.control_dependencies([check, check_low]):
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=flat_logits)
        weights = tf.cast(valid, tf.float32)
        if class_weights is not None:
            class_weights = tf.convert_to_tensor(class_weights, tf.float32)
            weights *= tf.gather(class_weights, safe)
        count = tf.reduce_sum(tf.cast(valid, tf.float32))
        return tf.reduce_sum(xent * weights) / tf.maximum(count, 1.0)


def pixel_accuracy(logits, labels, ignore_label: int = 255):
    """Share of non-void pixels whose arg-max class is right (a float32 scalar tensor)."""
    with tf.name_scope("pixel_accuracy"):
        labels = tf.cast(labels, tf.int32)
        valid = tf.not_equal(labels, ignore_label)
        right = tf.logical_and(valid, tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels))
        return tf.reduce_sum(tf.cast(right, tf.float32)) / tf.maximum(
            tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)


def learning_rate_schedule(config: TrainConfig, global_step):
    """The learning rate as a tensor of the global step (so resuming restores it)."""
    if config.lr_schedule == "constant":
        return tf.constant(config.learning_rate, tf.float32, name="learning_rate")
    return tf.train.polynomial_decay(config.learning_rate, global_step, config.steps,
                                     end_learning_rate=0.0, power=config.lr_power,
                                     name="learning_rate")


def make_optimizer(config: TrainConfig, learning_rate):
    """SGD with momentum (the paper) or Adam."""
    if config.optimizer == "sgd":
        return tf.train.MomentumOptimizer(learning_rate, config.momentum)
    return tf.train.AdamOptimizer(learning_rate)


# ---------------------------------------------------------------------------
# Devices, threads, determinism
# ---------------------------------------------------------------------------

def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def session_config() -> "tf.ConfigProto":
    """Session options: all CPU cores, GPU memory allocated as needed."""
    cores = _cpu_count()
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
    return f"Training on the CPU with {_cpu_count()} threads (no GPU visible)"


@contextlib.contextmanager
def enable_determinism(enabled: bool = True):
    """Context manager: TensorFlow's deterministic GPU kernels while it is open.

    On a CPU nothing needs switching on: the kernels this model uses (oneDNN
    convolutions, fused batch norm, the pooling gradients, Adam/momentum)
    already give bit-identical results run after run, given the seeds and the
    data order that :func:`train` fixes (``tests/test_train.py`` checks it).
    TensorFlow's op determinism would even cost CPU time there: it turns the
    input pipeline's parallel ``map`` of a ``numpy_function`` into a
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
    try:
        # TF2-only internals, guarded: TF 1.15 takes the environment variable below.
        from tensorflow.python.framework import config as tf_config  # tf115-fence: allow
    except ImportError:  # pragma: no cover - very old TensorFlow
        tf_config = None
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


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def open_datasets(config: TrainConfig):
    """The training and validation datasets named by ``config.data``.

    Returns:
        ``(train_set, val_set)``: sequences of ``(image, mask)`` with
        ``num_classes`` (:class:`segnet_lib.voc.VOCSegmentation` or
        :class:`segnet_lib.voc.CSVSegmentation`).

    Raises:
        FileNotFoundError: the folder, CSV or a split is missing (named).
        ValueError: a CSV without ``rle_order``, or a split too small.
    """
    from segnet_lib import voc

    if config.data == "sample":
        from segnet_lib import sample_data

        root = sample_data.sample_root()
        return voc.VOCSegmentation(root, config.train_split), voc.VOCSegmentation(root, config.val_split)
    path = Path(config.data).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data {str(path)!r} not found (expected 'sample', a VOC folder or a CSV)")
    if path.is_dir():
        return voc.VOCSegmentation(path, config.train_split), voc.VOCSegmentation(path, config.val_split)
    if config.rle_order is None:
        raise ValueError(f"data {str(path)!r} is a CSV: give its RLE pixel order (rle_order 'C' or 'F')")
    image_dir = Path(config.image_dir) if config.image_dir else (
        path.parent / voc.IMAGE_DIR if (path.parent / voc.IMAGE_DIR).is_dir() else path.parent)
    if config.val_csv:
        return (voc.CSVSegmentation(image_dir, path, config.rle_order),
                voc.CSVSegmentation(image_dir, config.val_csv, config.rle_order))
    ids = voc.CSVSegmentation(image_dir, path, config.rle_order).ids
    if len(ids) < 2:
        raise ValueError(f"{path} has {len(ids)} image(s); need 2 or more to hold out validation images")
    order = np.random.default_rng(config.seed).permutation(len(ids))
    n_val = max(1, int(round(len(ids) * config.val_fraction)))
    val_ids = sorted(ids[i] for i in order[:n_val])
    held = set(val_ids)
    train_ids = [i for i in ids if i not in held]
    return (voc.CSVSegmentation(image_dir, path, config.rle_order, ids=train_ids),
            voc.CSVSegmentation(image_dir, path, config.rle_order, ids=val_ids))


def _class_weights(config: TrainConfig, train_set, run_dir: Path, num_classes: int) -> np.ndarray:
    """Median-frequency weights, computed once per run and saved (resume reuses them)."""
    path = run_dir / CLASS_WEIGHTS_FILE
    if path.is_file():
        weights = np.asarray(json.loads(path.read_text())["weights"], np.float32)
        if weights.shape == (num_classes,):
            return weights
    if config.class_weighting == "none":
        weights = np.ones(num_classes, np.float32)
    else:
        from segnet_lib import data

        counts, image_pixels = data.class_statistics(train_set, num_classes)
        weights = data.median_frequency_weights(counts, image_pixels)
    names = list(getattr(train_set, "class_names", range(num_classes)))
    _atomic_write_text(path, json.dumps(
        {"class_weighting": config.class_weighting, "weights": [float(w) for w in weights],
         "classes": [str(n) for n in names]}, indent=1))
    return weights


# ---------------------------------------------------------------------------
# Files: atomic writes, history, checkpoints, lock
# ---------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
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


def _atomic_write_text(path: Path, text: str) -> None:
    """Writes a file so that readers see the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_history(path: Path, rows: Sequence[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=list(HISTORY_COLUMNS))
    # Full precision (no float_format): a resumed run reads back exactly the
    # numbers it wrote.
    _atomic_write_text(path, frame.to_csv(index=False))
    return frame


def read_history(run_dir) -> pd.DataFrame:
    """The history table of a run (``history.csv``; see :data:`HISTORY_COLUMNS`)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no history in {run_dir}")
    return pd.read_csv(path)


def _checkpoint_dirs(run_dir: Path) -> list:
    """Complete checkpoint folders, oldest first, as ``(step, path)``."""
    found = []
    for p in Path(run_dir).glob(f"{CHECKPOINT_DIR_PREFIX}*"):
        suffix = p.name[len(CHECKPOINT_DIR_PREFIX):]
        if p.is_dir() and suffix.isdigit() and (p / META_FILE).is_file():
            found.append((int(suffix), p))
    return sorted(found)


def _read_meta(ckpt_dir: Path) -> dict:
    return json.loads((ckpt_dir / META_FILE).read_text())


def latest_checkpoint(run_dir) -> Optional[str]:
    """Prefix of the newest complete checkpoint of a run (for ``Saver.restore``), or None."""
    found = _checkpoint_dirs(Path(run_dir))
    return str(found[-1][1] / CHECKPOINT_BASENAME) if found else None


def best_checkpoint(run_dir) -> Optional[str]:
    """Prefix of the checkpoint with the best validation mean IoU (else the newest), or None."""
    best = _best_dir(Path(run_dir))
    return str(best / CHECKPOINT_BASENAME) if best else latest_checkpoint(run_dir)


def _best_dir(run_dir: Path) -> Optional[Path]:
    scored = []
    for step, path in _checkpoint_dirs(run_dir):
        miou = _read_meta(path).get("val_mean_iou")
        if miou is not None and math.isfinite(miou):
            # Ties go to the earlier checkpoint: it was best first.
            scored.append((miou, -step, path))
    return max(scored)[2] if scored else None


class _Checkpoints:
    """Atomic checkpoint folders; keeps the last K and the best by validation mIoU."""

    def __init__(self, run_dir: Path, saver, keep_last: int):
        self.run_dir = run_dir
        self.saver = saver
        self.keep_last = keep_last
        # Left by a process killed mid-save (we hold the run's lock, so no
        # one else is writing them now).
        for stale in run_dir.glob(f".{CHECKPOINT_DIR_PREFIX}*.old-*"):
            final = run_dir / stale.name[1:].split(".old-")[0]
            if final.exists():
                shutil.rmtree(stale, ignore_errors=True)
            else:  # killed between the two renames of a re-save: put it back
                os.rename(stale, final)
        for stale in run_dir.glob(f".{CHECKPOINT_DIR_PREFIX}*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def save(self, sess, step: int, meta: dict, history: Sequence[dict]) -> Path:
        final = self.run_dir / f"{CHECKPOINT_DIR_PREFIX}{step:08d}"
        tmp = self.run_dir / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.saver.save(sess, str(tmp / CHECKPOINT_BASENAME), write_meta_graph=False,
                        write_state=False)
        _write_history(tmp / HISTORY_FILE, history)
        _atomic_write_text(tmp / META_FILE, json.dumps(dict(meta, step=step), indent=1))
        for f in tmp.iterdir():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(tmp)
        if final.exists():  # saved twice at one step (e.g. Ctrl-C right after a save)
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(self.run_dir)
        self._prune_and_record()
        return final

    def _prune_and_record(self) -> None:
        found = _checkpoint_dirs(self.run_dir)
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


@contextlib.contextmanager
def _run_lock(run_dir: Path, wait: bool = False):
    """One process per run folder: a second trainer fails fast (or waits)."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / _LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise RuntimeError(
                f"another process is training in {run_dir}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step.

    A signal then never interrupts a half-applied update or a checkpoint
    write. The first signal restores the previous handlers, so a second
    Ctrl-C stops at once, the usual way.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signum
        self._restore()

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self._restore()
        return False


# ---------------------------------------------------------------------------
# The training graph and loop
# ---------------------------------------------------------------------------

def _colorize_tensor(labels):
    """uint8 ``[B, H, W, 3]`` VOC colours of int labels ``[B, H, W]`` (for TensorBoard)."""
    from segnet_lib import voc

    palette = tf.constant(voc.VOC_COLORMAP, tf.uint8)
    return tf.gather(palette, tf.clip_by_value(labels, 0, 255))


class _Graph:
    """The tensors and ops of one training graph."""


class TrainingStep(NamedTuple):
    """The tensors of one training step (see :func:`training_step`)."""

    logits: Any          # float32 [batch, height, width, num_classes]
    data_loss: Any       # the (weighted) cross-entropy
    reg_loss: Any        # the weight decay term
    loss: Any            # their sum, which the optimiser minimises
    accuracy: Any        # pixel accuracy of the batch
    learning_rate: Any
    global_step: Any
    train_op: Any        # one update (and the batch-norm statistics' update)


def training_step(config: TrainConfig, images, labels, num_classes: int,
                  class_weights=None) -> TrainingStep:
    """Builds SegNet on a batch, its loss and one optimiser update.

    This is exactly the step :func:`train` runs (and what
    ``benchmarks/bench_train.py`` times).

    Args:
        config: the :class:`TrainConfig` (model, optimiser, learning rate).
        images: float32 ``[batch, height, width, 3]``, VGG-normalised.
        labels: int ``[batch, height, width]``, 255 = void.
        num_classes: ``C``.
        class_weights: None or float ``[C]``.

    Returns:
        A :class:`TrainingStep`.
    """
    from segnet_lib import model
    from segnet_lib.voc import IGNORE_LABEL

    global_step = tf.train.get_or_create_global_step()
    logits, _ = model.segnet(images, num_classes, is_training=True, config=config.model_config())
    data_loss = segmentation_loss(logits, labels, num_classes, class_weights, IGNORE_LABEL)
    # The builder put weight_decay * sum(w ** 2) / 2 of every kernel here.
    reg = tf.losses.get_regularization_losses()
    reg_loss = tf.add_n(reg, name="weight_decay") if reg else tf.constant(0.0)
    loss = tf.add(data_loss, reg_loss, name="total_loss")
    accuracy = pixel_accuracy(logits, labels, IGNORE_LABEL)
    learning_rate = learning_rate_schedule(config, global_step)
    optimizer = make_optimizer(config, learning_rate)
    # Batch-norm moving averages are updated with every step.
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        train_op = optimizer.minimize(loss, global_step=global_step)
    return TrainingStep(logits, data_loss, reg_loss, loss, accuracy, learning_rate, global_step,
                        train_op)


def _build_graph(config: TrainConfig, train_set, val_set, class_weights, start_step: int,
                 num_classes: int) -> _Graph:
    from segnet_lib import data, model
    from segnet_lib.voc import IGNORE_LABEL

    g = _Graph()
    g.global_step = tf.train.get_or_create_global_step()
    model_config = config.model_config()

    with tf.name_scope("input"):
        # Resuming at start_step gives the batches an uninterrupted run would
        # (the pipeline numbers its elements; augmentation depends only on
        # (seed, number)), without reading the ones already trained on.
        train_ds = data.make_dataset(train_set, config.input_config(True), training=True,
                                     start_batch=start_step)
        images, labels = tf.data.make_one_shot_iterator(train_ds).get_next()
        val_ds = data.make_dataset(val_set, config.input_config(False), training=False)
        if config.val_images:
            val_ds = val_ds.take(config.val_images)
        g.val_iterator = tf.data.make_initializable_iterator(val_ds)
        val_images, val_labels = g.val_iterator.get_next()

    g.class_weights = tf.constant(class_weights, tf.float32, name="class_weights")
    step = training_step(config, images, labels, num_classes, g.class_weights)
    logits = step.logits
    for name in ("data_loss", "reg_loss", "loss", "accuracy", "learning_rate", "train_op"):
        setattr(g, name, getattr(step, name))

    val_logits, _ = model.segnet(val_images, num_classes, is_training=False, config=model_config,
                                 reuse=True)
    g.val_loss = segmentation_loss(val_logits, val_labels, num_classes, g.class_weights, IGNORE_LABEL)
    g.val_predictions = tf.argmax(val_logits, -1, output_type=tf.int32)
    g.val_labels = val_labels

    with tf.name_scope("summaries"):
        scalars = [tf.summary.scalar("loss/total", g.loss),
                   tf.summary.scalar("loss/cross_entropy", g.data_loss),
                   tf.summary.scalar("loss/weight_decay", g.reg_loss),
                   tf.summary.scalar("learning_rate", g.learning_rate),
                   tf.summary.scalar("train/pixel_accuracy", g.accuracy)]
        g.scalar_summaries = tf.summary.merge(scalars)
        predictions = tf.argmax(logits, -1, output_type=tf.int32)
        shown = 3
        pictures = [
            tf.summary.image("train/image", tf.cast(tf.clip_by_value(
                images[:shown] + tf.constant(data.VGG_MEAN_RGB), 0, 255), tf.uint8), shown),
            tf.summary.image("train/ground_truth", _colorize_tensor(labels[:shown]), shown),
            tf.summary.image("train/prediction", _colorize_tensor(predictions[:shown]), shown),
        ]
        g.image_summaries = tf.summary.merge(pictures + scalars)

    # Checked before each save: weights, batch-norm statistics and optimiser
    # slots can overflow a step before the loss shows it.
    g.all_finite = tf.reduce_all(
        [tf.reduce_all(tf.is_finite(v)) for v in tf.global_variables()
         if v.dtype.base_dtype.is_floating],
        name="all_finite")
    # Everything the run needs to resume: weights, batch-norm statistics,
    # optimiser slots, the global step.
    g.saver = tf.train.Saver(tf.global_variables(), max_to_keep=None, save_relative_paths=True)
    g.init = tf.global_variables_initializer()
    return g


def _validate(sess, g: _Graph, num_classes: int, stop: _StopSignals) -> Optional[dict]:
    """Scores the validation images; None when a stop signal cut it short."""
    from segnet_lib import metrics

    sess.run(g.val_iterator.initializer)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    losses = []
    while True:
        if stop.received:
            return None
        try:
            loss, labels, predictions = sess.run([g.val_loss, g.val_labels, g.val_predictions])
        except tf.errors.OutOfRangeError:
            break
        losses.append(loss)
        confusion += metrics.confusion_matrix(labels, predictions, num_classes)
    result = metrics.scores(confusion)
    return {"val_loss": float(np.mean(losses)) if losses else math.nan,
            "val_pixel_accuracy": float(result["global_accuracy"]),
            "val_class_accuracy": float(result["class_accuracy"]),
            "val_mean_iou": float(result["mean_iou"])}


def _value_summary(values: Mapping[str, float]):
    return tf.Summary(value=[tf.Summary.Value(tag=k.replace("val_", "val/"), simple_value=v)
                             for k, v in values.items() if v is not None and math.isfinite(v)])


def _restore_history(ckpt_dir: Optional[Path]) -> list:
    if ckpt_dir is None or not (ckpt_dir / HISTORY_FILE).is_file():
        return []
    frame = pd.read_csv(ckpt_dir / HISTORY_FILE)
    return frame.to_dict("records")


def train(config: TrainConfig, out_dir, progress: bool = True, export: bool = True,
          log=print, wait: bool = False) -> pd.DataFrame:
    """Trains SegNet, or resumes the run in ``out_dir``.

    Args:
        config: the :class:`TrainConfig`.
        out_dir: the run folder (created). If it holds a run of the same
            config, training continues from its newest checkpoint; if that run
            already reached ``config.steps``, nothing is trained.
        progress: show a tqdm progress bar (loss, pixel accuracy, images/s).
        export: when training finishes, write the frozen inference graph of the
            best checkpoint to ``out_dir/export`` (see :func:`export_model`).
        log: where one-line messages go (``print``; ``None`` for silence).
        wait: if another process is training in ``out_dir``, wait for it
            (instead of failing), then resume or return its result.

    Returns:
        The history as a pandas DataFrame (also in ``out_dir/history.csv``).

    Raises:
        ValueError: a bad config, or ``out_dir`` holds a different run.
        FileNotFoundError: the data is missing.
        TrainingDiverged: the loss or a weight became NaN/inf.
        KeyboardInterrupt: after Ctrl-C or SIGTERM, once the checkpoint is saved.
    """
    from tqdm import tqdm

    log = log or (lambda *a, **k: None)
    config.validate()
    run_dir = Path(out_dir)
    check_run_dir(config, run_dir)
    with _run_lock(run_dir, wait=wait):
        check_run_dir(config, run_dir)  # again, now that no one else writes here
        _atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))
        found = _checkpoint_dirs(run_dir)
        start_step, last_dir = (found[-1][0], found[-1][1]) if found else (0, None)
        history = _restore_history(last_dir)
        if start_step >= config.steps:
            frame = _write_history(run_dir / HISTORY_FILE, history)
            if export:
                _export_if_stale(run_dir, log)
            (run_dir / _DONE_FILE).touch()
            return frame
        (run_dir / _DONE_FILE).unlink(missing_ok=True)

        train_set, val_set = open_datasets(config)
        num_classes = train_set.num_classes
        weights = _class_weights(config, train_set, run_dir, num_classes)
        log(device_report())
        if start_step:
            log(f"Resuming {run_dir} from step {start_step} of {config.steps}")
            # Rows logged after that checkpoint (before a crash) are redone.
            _write_history(run_dir / HISTORY_FILE, history)

        graph = tf.Graph()
        with graph.as_default(), contextlib.ExitStack() as stack:
            from segnet_lib import set_seed

            set_seed(config.seed)
            stack.enter_context(enable_determinism(config.deterministic))
            g = _build_graph(config, train_set, val_set, weights, start_step, num_classes)
            init_fn = None
            if config.vgg16_weights and not start_step:
                from segnet_lib import weights as vgg

                init_fn = vgg.load_vgg16(config.vgg16_weights)
            graph.finalize()  # nothing may add ops inside the loop (a slow leak otherwise)
            writer = tf.summary.FileWriter(str(run_dir / SUMMARY_DIR),
                                           graph if not start_step else None)
            checkpoints = _Checkpoints(run_dir, g.saver, config.keep_last)
            try:
                with tf.Session(config=session_config()) as sess, _StopSignals() as stop:
                    if last_dir is not None:
                        g.saver.restore(sess, str(last_dir / CHECKPOINT_BASENAME))
                        restored = int(sess.run(g.global_step))
                        if restored != start_step:
                            raise ValueError(
                                f"{last_dir} holds global step {restored}, expected {start_step}")
                        # Events after this step (written before the crash) are orphans.
                        writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), start_step)
                    else:
                        sess.run(g.init)
                        if init_fn is not None:
                            init_fn(sess)
                    frame = _loop(sess, g, config, run_dir, start_step, history, num_classes,
                                  len(train_set), writer, checkpoints, stop,
                                  tqdm(total=config.steps, initial=start_step, disable=not progress,
                                       desc=run_dir.name, unit="step", file=sys.stderr,
                                       dynamic_ncols=True, mininterval=1.0),
                                  log)
            finally:
                writer.close()
        if export:
            _export_if_stale(run_dir, log)
        (run_dir / _DONE_FILE).touch()
        return frame


def _loop(sess, g, config, run_dir, step, history, num_classes, num_images, writer,
          checkpoints, stop, bar, log) -> pd.DataFrame:
    """The training loop proper (see :func:`train`)."""
    elapsed = float(history[-1]["elapsed_seconds"]) if history else 0.0
    best = max((r["val_mean_iou"] for r in history
                if r.get("val_mean_iou") is not None and math.isfinite(r["val_mean_iou"])),
               default=None)
    # Step time (for images/s) and wall time (validation and saving included).
    window_loss, window_acc, window_steps, window_busy = [], [], 0, 0.0
    window_start = time.perf_counter()
    last_saved = step
    bar.set_postfix_str("starting")

    def row(values=None):
        nonlocal window_loss, window_acc, window_start, window_steps, window_busy, elapsed
        now = time.perf_counter()
        elapsed += now - window_start
        r = {k: math.nan for k in HISTORY_COLUMNS}
        r.update(step=step, epoch=step * config.batch_size / num_images,
                 loss=float(np.mean(window_loss)) if window_loss else math.nan,
                 pixel_accuracy=float(np.mean(window_acc)) if window_acc else math.nan,
                 learning_rate=float(lr), elapsed_seconds=elapsed,
                 images_per_second=(window_steps * config.batch_size / window_busy
                                    if window_steps else math.nan))
        r.update(values or {})
        history.append(r)
        window_loss, window_acc, window_steps, window_busy = [], [], 0, 0.0
        window_start = now
        _write_history(run_dir / HISTORY_FILE, history)

    def save(val=None):
        nonlocal last_saved
        if not sess.run(g.all_finite):
            raise TrainingDiverged(
                f"a weight became NaN or infinite by step {step}; stopped without saving. "
                f"{_last_good(run_dir)}")
        meta = {"learning_rate": float(lr), "time": time.time(),
                "val_mean_iou": None if not val else val["val_mean_iou"]}
        checkpoints.save(sess, step, meta, history)
        last_saved = step

    lr = sess.run(g.learning_rate)
    try:
        while step < config.steps:
            fetches = {"train": g.train_op, "loss": g.loss, "acc": g.accuracy, "lr": g.learning_rate}
            next_step = step + 1
            want_images = next_step % config.val_every == 0 or next_step == config.steps
            if want_images:
                fetches["summary"] = g.image_summaries
            elif next_step % config.summary_every == 0:
                fetches["summary"] = g.scalar_summaries
            began = time.perf_counter()
            out = sess.run(fetches)
            window_busy += time.perf_counter() - began
            loss, lr = float(out["loss"]), float(out["lr"])
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss} at step {next_step}; training stopped. "
                    f"{_last_good(run_dir)} Lower the learning rate (or check the data) "
                    "and rerun the same command to resume from it.")
            step = next_step
            window_loss.append(loss)
            window_acc.append(float(out["acc"]))
            window_steps += 1
            if "summary" in out:
                writer.add_summary(out["summary"], step)
            bar.update(1)
            if window_steps and step % config.log_every == 0:
                rate = window_steps * config.batch_size / max(window_busy, 1e-9)
                bar.set_postfix_str(f"loss {np.mean(window_loss):.3f}, acc {np.mean(window_acc):.3f}, "
                                    f"{rate:.1f} img/s", refresh=False)
            validate = step % config.val_every == 0 or step == config.steps
            if validate:
                val = _validate(sess, g, num_classes, stop)
                if val is not None:
                    writer.add_summary(_value_summary(val), step)
                    best = val["val_mean_iou"] if best is None else max(best, val["val_mean_iou"])
                    bar.set_postfix_str(f"loss {loss:.3f}, val mIoU {val['val_mean_iou']:.3f} "
                                        f"(best {best:.3f})", refresh=True)
                row(val)
                save(val)
            elif step % config.log_every == 0:
                row()
            if not validate and step % config.checkpoint_every == 0:
                save()
            if stop.received:
                if window_steps:
                    row()
                if last_saved != step:
                    save()
                writer.flush()
                bar.close()
                log(f"Stopped by signal {stop.received} at step {step}; checkpoint saved in "
                    f"{run_dir}. Rerun the same command to resume.")
                raise KeyboardInterrupt(f"training stopped at step {step}")
    finally:
        bar.close()
    return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))


def _last_good(run_dir: Path) -> str:
    found = _checkpoint_dirs(run_dir)
    if not found:
        return "No checkpoint had been written yet."
    step, path = found[-1]
    return f"The last good checkpoint ({path}, step {step}) is kept."


# ---------------------------------------------------------------------------
# Inference export and prediction
# ---------------------------------------------------------------------------

_INPUT_NAME = "images"
_OUTPUT_NAME = "probabilities"
_MC_OUTPUT_NAME = "mc_probabilities"


def _inference_graph(config: TrainConfig, num_classes: int):
    """Builds ``images uint8 [B, H, W, 3] -> probabilities float32 [B, H, W, C]``.

    The Bayesian variant gets a second output, ``mc_probabilities``, with
    dropout on (Monte Carlo sampling): each batch element is one sample.
    """
    from segnet_lib import data, model

    images = tf.placeholder(tf.uint8, [None, None, None, 3], name=_INPUT_NAME)
    normalised = data.normalize(images)
    model_config = config.model_config()
    logits, _ = model.segnet(normalised, num_classes, is_training=False, config=model_config)
    outputs = {_OUTPUT_NAME: tf.nn.softmax(logits, name=_OUTPUT_NAME)}
    if config.variant == "bayesian":
        mc_logits, _ = model.segnet(normalised, num_classes, is_training=False, config=model_config,
                                    reuse=True, mc_dropout=True)
        outputs[_MC_OUTPUT_NAME] = tf.nn.softmax(mc_logits, name=_MC_OUTPUT_NAME)
    return images, outputs


def export_model(run_dir, out=None, checkpoint: str = "best", format: str = "frozen") -> Path:
    """Freezes a checkpoint into an inference graph that :class:`Predictor` loads.

    The inference graph (``is_training=False``, batch-norm moving averages, no
    loss, optimiser or input pipeline) is built fresh, the checkpoint's values
    are restored into it, and then either

    * ``'frozen'``: the variables become constants
      (``tf.graph_util.convert_variables_to_constants``) in one GraphDef file,
      ``out/frozen_graph.pb``, or
    * ``'saved_model'``: a SavedModel (``tf.saved_model.simple_save``) in ``out``,
      with the signature ``images -> probabilities``.

    Either way ``out/export.json`` records the tensor names, classes and the
    checkpoint used.

    Args:
        run_dir: a training run folder.
        out: destination folder (default ``run_dir/export``; for
            ``'saved_model'`` it must not exist yet).
        checkpoint: ``'best'`` (best validation mIoU), ``'latest'``, or a
            checkpoint prefix.
        format: ``'frozen'`` or ``'saved_model'``.

    Returns:
        The destination folder.
    """
    from segnet_lib import set_seed, voc

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format={format!r}; expected one of {EXPORT_FORMATS}")
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if checkpoint in ("best", "latest"):
        prefix = best_checkpoint(run_dir) if checkpoint == "best" else latest_checkpoint(run_dir)
        if prefix is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint to export")
    else:
        prefix = checkpoint
        if not Path(prefix + ".index").is_file():
            raise FileNotFoundError(f"checkpoint {prefix!r} not found (no {prefix}.index)")
    weights_file = run_dir / CLASS_WEIGHTS_FILE
    class_names = (json.loads(weights_file.read_text())["classes"] if weights_file.is_file()
                   else list(voc.VOC_CLASSES))
    num_classes = len(class_names)
    out = Path(out) if out is not None else run_dir / EXPORT_DIR
    meta_path = Path(prefix).parent / META_FILE
    step = json.loads(meta_path.read_text())["step"] if meta_path.is_file() else None
    graph = tf.Graph()
    with graph.as_default():
        # Seeded: the Bayesian variant's dropout samples repeat in a new session.
        set_seed(config.seed)
        images, outputs = _inference_graph(config, num_classes)
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session(config=session_config()) as sess:
            saver.restore(sess, prefix)
            info = {"format": format, "input": images.name,
                    "outputs": {k: v.name for k, v in outputs.items()},
                    "num_classes": num_classes, "class_names": class_names,
                    "variant": config.variant, "step": step,
                    # Relative to the run folder, so the folder can move.
                    "checkpoint": os.path.relpath(prefix, run_dir)}
            if format == "frozen":
                frozen = tf.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), [t.op.name for t in outputs.values()])
                out.mkdir(parents=True, exist_ok=True)
                tmp = out / f".{FROZEN_GRAPH_FILE}.tmp-{os.getpid()}"
                tmp.write_bytes(frozen.SerializeToString())
                os.replace(tmp, out / FROZEN_GRAPH_FILE)
            else:
                if out.exists():
                    raise ValueError(f"SavedModel destination {out} exists; choose a new folder")
                tf.saved_model.simple_save(sess, str(out), inputs={_INPUT_NAME: images},
                                           outputs=outputs)
    _atomic_write_text(out / EXPORT_INFO_FILE, json.dumps(info, indent=1))
    return out


def _export_if_stale(run_dir: Path, log) -> None:
    """Exports the best checkpoint unless ``run_dir/export`` already holds it."""
    info_path = run_dir / EXPORT_DIR / EXPORT_INFO_FILE
    best = best_checkpoint(run_dir)
    if best is None:
        return
    wanted = os.path.relpath(best, run_dir)
    if info_path.is_file() and (run_dir / EXPORT_DIR / FROZEN_GRAPH_FILE).is_file():
        if json.loads(info_path.read_text()).get("checkpoint") == wanted:
            return
    export_model(run_dir)


class Predictor:
    """Runs an exported SegNet (frozen GraphDef or SavedModel) on images.

    Build one with :func:`load_predictor`. It owns a ``tf.Session`` on its own
    graph; use it as a context manager or call :meth:`close`.

    Attributes:
        num_classes: ``C``.
        class_names: tuple of class names.
        variant: the model variant.
        has_mc_dropout: whether :meth:`sample` can draw Monte Carlo samples.
    """

    def __init__(self, graph, session, input_tensor, outputs: Mapping[str, Any], info: Mapping):
        self._graph = graph
        self._session = session
        self._input = input_tensor
        self._outputs = dict(outputs)
        self.info = dict(info)
        self.num_classes = int(info["num_classes"])
        self.class_names = tuple(info["class_names"])
        self.variant = info.get("variant")
        self.has_mc_dropout = _MC_OUTPUT_NAME in self._outputs

    @staticmethod
    def _check(images, batched: bool) -> np.ndarray:
        images = np.asarray(images)
        ndim = 4 if batched else 3
        if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] != 3:
            want = "[batch, height, width, 3]" if batched else "[height, width, 3]"
            raise ValueError(
                f"expected a uint8 RGB image {want}, got dtype {images.dtype} and shape {images.shape}")
        return images

    def predict_batch(self, images) -> np.ndarray:
        """Class probabilities of a batch: uint8 ``[B, H, W, 3]`` -> float32 ``[B, H, W, C]``."""
        images = self._check(images, batched=True)
        return self._session.run(self._outputs[_OUTPUT_NAME], {self._input: images})

    def predict(self, image) -> np.ndarray:
        """Class probabilities of one image: uint8 ``[H, W, 3]`` -> float32 ``[H, W, C]``."""
        return self.predict_batch(self._check(image, batched=False)[None])[0]

    def labels(self, image) -> np.ndarray:
        """uint8 ``[H, W]`` arg-max class ids of one image."""
        return self.predict(image).argmax(-1).astype(np.uint8)

    def sample(self, images) -> np.ndarray:
        """Monte Carlo dropout samples (Bayesian SegNet only).

        Every batch element gets its own dropout mask, so a batch of ``N``
        copies of one image gives ``N`` samples (see
        :func:`segnet_lib.bayes.mc_dropout_predict`, which takes this method
        as its ``sample_fn``).

        Args:
            images: uint8 ``[B, H, W, 3]``.

        Returns:
            float32 ``[B, H, W, C]`` softmax probabilities, dropout on.
        """
        if not self.has_mc_dropout:
            raise ValueError(f"a {self.variant!r} model has no dropout to sample; "
                             "train the 'bayesian' variant for Monte Carlo dropout")
        images = self._check(images, batched=True)
        return self._session.run(self._outputs[_MC_OUTPUT_NAME], {self._input: images})

    def close(self) -> None:
        """Frees the session."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"Predictor({self.variant!r}, {self.num_classes} classes, "
                f"{self.info.get('format')}, step {self.info.get('step')})")


def load_predictor(path, checkpoint: str = "best") -> Predictor:
    """Loads an exported model for inference, without the training graph.

    Args:
        path: a run folder (its ``export/`` is used, written first from the
            chosen checkpoint if missing or out of date), an export folder
            (``frozen_graph.pb`` or a SavedModel, with ``export.json``), or a
            ``.pb`` frozen graph next to its ``export.json``.
        checkpoint: for a run folder, ``'best'`` or ``'latest'``.

    Returns:
        A :class:`Predictor`.

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
    """
    path = Path(path).expanduser()
    if (path / CONFIG_FILE).is_file():  # a run folder
        if checkpoint == "best":
            _export_if_stale(path, None)
            path = path / EXPORT_DIR
        else:
            path = export_model(path, out=path / f"{EXPORT_DIR}-{checkpoint}", checkpoint=checkpoint)
    folder = path.parent if path.is_file() else path
    info_path = folder / EXPORT_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{path} is not an exported model (no {EXPORT_INFO_FILE}); pass a run folder, "
            "an export folder or a frozen_graph.pb")
    info = json.loads(info_path.read_text())
    graph = tf.Graph()
    session = tf.Session(graph=graph, config=session_config())
    with graph.as_default():
        if info["format"] == "saved_model":
            tf.saved_model.loader.load(session, [tf.saved_model.tag_constants.SERVING], str(folder))
        else:
            pb = path if path.is_file() else folder / FROZEN_GRAPH_FILE
            graph_def = tf.GraphDef()
            graph_def.ParseFromString(pb.read_bytes())
            tf.import_graph_def(graph_def, name="")
    input_tensor = graph.get_tensor_by_name(info["input"])
    outputs = {k: graph.get_tensor_by_name(v) for k, v in info["outputs"].items()}
    return Predictor(graph, session, input_tensor, outputs, info)


# ---------------------------------------------------------------------------
# The book's sample checkpoint
# ---------------------------------------------------------------------------

def sample_recipe(variant: str = "segnet") -> TrainConfig:
    """The fixed CPU recipe that notebooks 04-07 share (about 2.5 minutes on 2 cores).

    A narrow SegNet (a quarter of the features: 1.8M parameters) on 96x96
    crops of the sample data, rescaled by 0.5-1 so that a crop often holds a
    whole object, batches of 4, Adam from 2e-3 with poly decay,
    median-frequency class weights, no weight decay (600 steps are too few for
    it to matter, except to slow learning), 600 steps, validation every 100.
    Deterministic. Chosen by measuring a dozen variants within the same CPU
    budget (see ``notes``: crops of 64 to 128, widths 0.125 and 0.25, constant
    and poly rates): this one reached the best validation mean IoU.
    """
    return TrainConfig(
        data="sample", variant=variant, width_multiplier=0.25, crop_size=(96, 96),
        batch_size=4, min_scale=0.5, max_scale=1.0, optimizer="adam", learning_rate=2e-3,
        lr_schedule="poly", weight_decay=0.0, class_weighting="median_frequency",
        steps=600, log_every=10, val_every=100, checkpoint_every=100, keep_last=2,
        summary_every=10, cache_images=True, seed=0, deterministic=True,
    )


def voc_gpu_recipe(variant: str = "segnet", vgg16_weights: Optional[str] = None) -> TrainConfig:
    """The paper's recipe for PASCAL VOC 2012 on one GPU (``$SEGNET_VOC_ROOT``).

    Full-width SegNet, 320x320 crops (VOC images are about 500x375) with
    0.5-2.0 scale jitter and flips, batch 8, SGD with momentum 0.9 at a fixed
    1e-3 (the paper's rate with a VGG16-initialised encoder), weight decay
    5e-4, median-frequency class weights, 20000 steps (about 110 epochs of the
    1464 training images); validation on 300 images every 1000 steps.
    """
    from segnet_lib import voc

    return TrainConfig(
        data=os.environ.get(voc.VOC_ROOT_ENV) or "sample", variant=variant, width_multiplier=1.0,
        vgg16_weights=vgg16_weights, crop_size=(320, 320), batch_size=8, min_scale=0.5,
        max_scale=2.0, optimizer="sgd", learning_rate=1e-3, momentum=0.9, lr_schedule="constant",
        weight_decay=5e-4, class_weighting="median_frequency", steps=20000, log_every=20,
        val_every=1000, val_images=300, checkpoint_every=1000, keep_last=3, summary_every=50,
        seed=0, deterministic=False,
    )


def sample_run_dir(variant: str = "segnet") -> Path:
    """The folder of :func:`sample_checkpoint`'s run, trained or not (yet).

    Training :func:`sample_recipe` into it (``train(sample_recipe(v),
    sample_run_dir(v))``) is what :func:`sample_checkpoint` does; notebook 04
    does it in the open.
    """
    from segnet_lib import sample_data

    # The data's version too: a regenerated sample set needs a new training.
    recipe = sample_recipe(variant)
    name = f"sample-data{sample_data.SAMPLE_VERSION}-{variant}-{recipe.fingerprint()}"
    return sample_data.cache_dir() / "checkpoints" / name


def sample_checkpoint(variant: str = "segnet", progress: bool = False) -> Path:
    """A run folder trained with :func:`sample_recipe`, cached; trained on first use.

    The folder is ``$SEGNET_CACHE_DIR/checkpoints/sample-data<N>-<variant>-<hash>``
    (default cache: ``~/.cache/segnet_lib``), naming the sample data's version
    and the recipe, so a changed recipe or dataset trains anew. Several processes may ask at once: one
    trains, the others wait for it. An interrupted training resumes.

    Args:
        variant: ``'segnet'``, ``'segnet_basic'`` or ``'bayesian'``.
        progress: show the progress bar while training.

    Returns:
        The run folder (``load_predictor(folder)`` gives its best model).
    """
    config = sample_recipe(variant)
    run_dir = sample_run_dir(variant)
    if not (run_dir / _DONE_FILE).is_file():
        train(config, run_dir, progress=progress, log=print if progress else None, wait=True)
    return run_dir
