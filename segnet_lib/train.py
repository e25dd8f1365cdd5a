"""Training SegNet: the training graph and the resumable loop.

One call trains (or resumes) a run::

    config = recipes.sample_recipe()            # or TrainConfig(data=..., steps=...)
    history = train(config, "runs/first")       # pandas DataFrame, also history.csv

The run folder (:mod:`segnet_lib.checkpoints` describes its files) holds
everything about the run, so rerunning the same call continues where it
stopped. This module only assembles pieces that live in their own modules:
the config (:mod:`~segnet_lib.config`), the data (:mod:`~segnet_lib.datasets`,
:mod:`~segnet_lib.data`), the model (:mod:`~segnet_lib.model`), the loss and
optimiser (:mod:`~segnet_lib.losses`), the checkpoints and the export
(:mod:`~segnet_lib.export`).

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
import math
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np
import pandas as pd
from tqdm import tqdm

from segnet_lib import data, metrics, model
from segnet_lib._setup import set_seed
from segnet_lib._tf import tf
from segnet_lib.checkpoints import (CHECKPOINT_BASENAME, DONE_FILE, HISTORY_COLUMNS, HISTORY_FILE,
                                    SUMMARY_DIR, Checkpoints, checkpoint_dirs, checkpoint_history,
                                    read_class_weights, run_lock, write_class_weights,
                                    write_history)
from segnet_lib.config import TrainConfig, check_run_dir, write_config
from segnet_lib.datasets import open_datasets
from segnet_lib.distribute import cluster_spec, make_cluster
from segnet_lib.export import export_if_stale
from segnet_lib.losses import segmentation_loss
from segnet_lib.runtime import device_report, enable_determinism
from segnet_lib.step import TrainingStep, replicated_training_step, training_step
from segnet_lib.voc import IGNORE_LABEL, VOC_COLORMAP
from segnet_lib.weights import load_vgg16

__all__ = ["train", "TrainingDiverged", "TrainingStep", "training_step", "TrainingGraph",
           "build_graph", "validate", "class_weights", "LogWindow", "StopSignals"]


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the message names the step."""


# ---------------------------------------------------------------------------
# The training graph
# ---------------------------------------------------------------------------

class TrainingGraph(NamedTuple):
    """Everything :func:`train` runs: the step, validation, summaries, saving."""

    step: TrainingStep
    val_iterator: Any      # initializable iterator over the validation images
    val_loss: Any          # loss of one validation image
    val_labels: Any        # int32 [1, H, W]
    val_predictions: Any   # int32 [1, H, W] arg-max classes
    scalar_summaries: Any
    image_summaries: Any   # the scalars plus a few images, labels and predictions
    all_finite: Any        # bool: every float variable is finite (checked before saving)
    saver: Any             # everything a run needs to resume
    init: Any              # variables (and a distributed input's iterator)
    train_iterator: Any = None  # a strategy's input iterator (initialised again on restore)


def _colorize_tensor(labels):
    """uint8 ``[B, H, W, 3]`` VOC colours of int labels ``[B, H, W]`` (for TensorBoard)."""
    palette = tf.constant(VOC_COLORMAP, tf.uint8)
    return tf.gather(palette, tf.clip_by_value(labels, 0, 255))


def build_graph(config: TrainConfig, train_set, val_set, class_weights, start_step: int,
                num_classes: int, strategy=None) -> TrainingGraph:
    """Builds the training graph of a run in the default graph.

    Args:
        config: the run's config.
        train_set, val_set: datasets (see :mod:`segnet_lib.datasets`).
        class_weights: float ``[C]`` loss weights.
        start_step: the global step the run resumes at (0 for a new run).
        num_classes: ``C``.
        strategy: None (one device) or the ``tf.distribute`` strategy of
            :func:`segnet_lib.distribute.make_cluster`; the training step then
            runs on every replica (validation on the first).

    Returns:
        A :class:`TrainingGraph`.
    """
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        tf.train.get_or_create_global_step()
    model_config = config.model_config()

    with tf.name_scope("input"):
        # Resuming at start_step gives the batches an uninterrupted run would
        # (the pipeline numbers its elements; augmentation depends only on
        # (seed, number)), without reading the ones already trained on.
        train_ds = data.make_dataset(train_set, config.input_config(True), training=True,
                                     start_batch=start_step)
        if strategy is None:
            images, labels = tf.data.make_one_shot_iterator(train_ds).get_next()
        val_ds = data.make_dataset(val_set, config.input_config(False), training=False)
        if config.val_images:
            val_ds = val_ds.take(config.val_images)
        val_iterator = tf.data.make_initializable_iterator(val_ds)
        val_images, val_labels = val_iterator.get_next()

    weights = tf.constant(class_weights, tf.float32, name="class_weights")
    train_iterator = None
    if strategy is None:
        step = training_step(config, images, labels, num_classes, weights)
    else:
        with strategy.scope():
            step, images, labels, train_iterator = replicated_training_step(
                strategy, config, train_ds, num_classes, weights)

    val_logits, _ = model.build(val_images, num_classes, is_training=False, config=model_config,
                                reuse=True)
    val_loss = segmentation_loss(val_logits, val_labels, num_classes, weights, IGNORE_LABEL)
    val_predictions = tf.argmax(val_logits, -1, output_type=tf.int32)

    with tf.name_scope("summaries"):
        scalars = [tf.summary.scalar("loss/total", step.loss),
                   tf.summary.scalar("loss/cross_entropy", step.data_loss),
                   tf.summary.scalar("loss/weight_decay", step.reg_loss),
                   tf.summary.scalar("learning_rate", step.learning_rate),
                   tf.summary.scalar("train/pixel_accuracy", step.accuracy)]
        scalar_summaries = tf.summary.merge(scalars)
        predictions = tf.argmax(step.logits, -1, output_type=tf.int32)
        shown = 3
        pictures = [
            tf.summary.image("train/image", tf.cast(tf.clip_by_value(
                images[:shown] + tf.constant(data.VGG_MEAN_RGB), 0, 255), tf.uint8), shown),
            tf.summary.image("train/ground_truth", _colorize_tensor(labels[:shown]), shown),
            tf.summary.image("train/prediction", _colorize_tensor(predictions[:shown]), shown),
        ]
        image_summaries = tf.summary.merge(pictures + scalars)

    # Checked before each save: weights, batch-norm statistics and optimiser
    # slots can overflow a step before the loss shows it.
    all_finite = tf.reduce_all(
        [tf.reduce_all(tf.is_finite(v)) for v in tf.global_variables()
         if v.dtype.base_dtype.is_floating],
        name="all_finite")
    # Everything the run needs to resume: weights, batch-norm statistics,
    # optimiser slots, the global step.
    saver = tf.train.Saver(tf.global_variables(), max_to_keep=None, save_relative_paths=True)
    init = tf.global_variables_initializer()
    if train_iterator is not None:
        init = tf.group(init, train_iterator.initializer)
    return TrainingGraph(step, val_iterator, val_loss, val_labels, val_predictions,
                         scalar_summaries, image_summaries, all_finite, saver, init,
                         train_iterator)


def class_weights(config: TrainConfig, train_set, run_dir) -> np.ndarray:
    """The loss weights of a run: computed once (median frequency, or ones) and saved.

    A resumed run reads them back from ``class_weights.json``, so its loss is
    the one it started with.

    Returns:
        float ``[C]``, ``C = train_set.num_classes``.
    """
    num_classes = train_set.num_classes
    saved = read_class_weights(run_dir)
    if saved is not None:
        weights = np.asarray(saved["weights"], np.float32)
        if weights.shape == (num_classes,):
            return weights
    if config.class_weighting == "none":
        weights = np.ones(num_classes, np.float32)
    else:
        counts, image_pixels = data.class_statistics(train_set, num_classes)
        weights = data.median_frequency_weights(counts, image_pixels)
    names = list(getattr(train_set, "class_names", range(num_classes)))
    write_class_weights(run_dir, config.class_weighting, weights, names)
    return weights


# ---------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------

class StopSignals:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step.

    A signal then never interrupts a half-applied update or a checkpoint
    write. The first signal restores the previous handlers, so a second
    Ctrl-C stops at once, the usual way.

    Attributes:
        received: the number of the signal received, or None.
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


class LogWindow:
    """The training steps since the last history row: losses, accuracies, time.

    Two clocks: the time inside training steps (for images per second) and
    the wall time of the whole run (validation and saving included), which a
    resumed run continues from its history.

    Args:
        batch_size: images per step.
        num_images: images in the training set (for the epoch column).
        elapsed: wall seconds of the run so far.
    """

    def __init__(self, batch_size: int, num_images: int, elapsed: float = 0.0):
        self.batch_size = batch_size
        self.num_images = num_images
        self.elapsed = elapsed
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.losses, self.accuracies, self.busy, self.start = [], [], 0.0, now

    @property
    def steps(self) -> int:
        """Steps added since the last row."""
        return len(self.losses)

    def add(self, loss: float, accuracy: float, seconds: float) -> None:
        """Records one step: its loss, pixel accuracy and duration."""
        self.losses.append(loss)
        self.accuracies.append(accuracy)
        self.busy += seconds

    def postfix(self) -> str:
        """The progress bar's summary of the window."""
        rate = self.steps * self.batch_size / max(self.busy, 1e-9)
        return (f"loss {np.mean(self.losses):.3f}, acc {np.mean(self.accuracies):.3f}, "
                f"{rate:.1f} img/s")

    def row(self, step: int, learning_rate: float, values: Optional[Mapping] = None) -> dict:
        """The history row of the window (see ``HISTORY_COLUMNS``); starts a new window.

        Args:
            step: the global step.
            learning_rate: the rate of the last step.
            values: further columns, e.g. validation scores.
        """
        now = time.perf_counter()
        self.elapsed += now - self.start
        r = {k: math.nan for k in HISTORY_COLUMNS}
        r.update(step=step, epoch=step * self.batch_size / self.num_images,
                 loss=float(np.mean(self.losses)) if self.losses else math.nan,
                 pixel_accuracy=float(np.mean(self.accuracies)) if self.accuracies else math.nan,
                 learning_rate=float(learning_rate), elapsed_seconds=self.elapsed,
                 images_per_second=(self.steps * self.batch_size / self.busy
                                    if self.steps else math.nan))
        r.update(values or {})
        self._reset(now)
        return r


def validate(sess, graph: TrainingGraph, num_classes: int, stop: StopSignals) -> Optional[dict]:
    """Scores the validation images; None when a stop signal cut it short.

    Returns:
        ``val_loss``, ``val_pixel_accuracy``, ``val_class_accuracy`` and
        ``val_mean_iou`` (see :mod:`segnet_lib.metrics`).
    """
    sess.run(graph.val_iterator.initializer)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    losses = []
    while True:
        if stop.received:
            return None
        try:
            loss, labels, predictions = sess.run(
                [graph.val_loss, graph.val_labels, graph.val_predictions])
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


def _last_good(run_dir: Path) -> str:
    found = checkpoint_dirs(run_dir)
    if not found:
        return "No checkpoint had been written yet."
    step, path = found[-1]
    return f"The last good checkpoint ({path}, step {step}) is kept."


class _Run(NamedTuple):
    """What the loop works on: the run folder, its summaries, checkpoints and data sizes."""

    path: Path
    writer: Any
    checkpoints: Checkpoints
    num_classes: int
    num_images: int


def _train_step(sess, g: TrainingGraph, config: TrainConfig, run: _Run, step: int,
                window: LogWindow) -> tuple:
    """Runs one update (with the summaries due); returns ``(new step, learning rate)``."""
    next_step = step + 1
    fetches = {"train": g.step.train_op, "loss": g.step.loss, "acc": g.step.accuracy,
               "lr": g.step.learning_rate}
    if next_step % config.val_every == 0 or next_step == config.steps:
        fetches["summary"] = g.image_summaries
    elif next_step % config.summary_every == 0:
        fetches["summary"] = g.scalar_summaries
    began = time.perf_counter()
    out = sess.run(fetches)
    seconds = time.perf_counter() - began
    loss = float(out["loss"])
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"the loss became {loss} at step {next_step}; training stopped. "
            f"{_last_good(run.path)} Lower the learning rate (or check the data) "
            "and rerun the same command to resume from it.")
    window.add(loss, float(out["acc"]), seconds)
    if "summary" in out:
        run.writer.add_summary(out["summary"], next_step)
    return next_step, float(out["lr"])


def _log_row(run: _Run, history: list, window: LogWindow, step: int, lr: float,
             values=None) -> None:
    history.append(window.row(step, lr, values))
    write_history(run.path / HISTORY_FILE, history)


def _save(sess, g: TrainingGraph, run: _Run, step: int, lr: float, history: list,
          val=None) -> int:
    """Saves a checkpoint unless a weight is no longer finite; returns ``step``."""
    if not sess.run(g.all_finite):
        raise TrainingDiverged(
            f"a weight became NaN or infinite by step {step}; stopped without saving. "
            f"{_last_good(run.path)}")
    meta = {"learning_rate": float(lr), "time": time.time(),
            "val_mean_iou": None if not val else val["val_mean_iou"]}
    run.checkpoints.save(sess, step, meta, history)
    return step


def _best_so_far(history: list) -> Optional[float]:
    return max((r["val_mean_iou"] for r in history
                if r.get("val_mean_iou") is not None and math.isfinite(r["val_mean_iou"])),
               default=None)


def _loop(sess, g: TrainingGraph, config: TrainConfig, run: _Run, step: int, history: list,
          stop: StopSignals, bar, log) -> pd.DataFrame:
    """The training loop proper (see :func:`train`)."""
    window = LogWindow(config.batch_size, run.num_images,
                       float(history[-1]["elapsed_seconds"]) if history else 0.0)
    best = _best_so_far(history)
    last_saved = step
    lr = float(sess.run(g.step.learning_rate))
    bar.set_postfix_str("starting")
    try:
        while step < config.steps:
            step, lr = _train_step(sess, g, config, run, step, window)
            bar.update(1)
            if step % config.log_every == 0:
                bar.set_postfix_str(window.postfix(), refresh=False)
            validating = step % config.val_every == 0 or step == config.steps
            if validating:
                val = validate(sess, g, run.num_classes, stop)
                if val is not None:
                    run.writer.add_summary(_value_summary(val), step)
                    best = val["val_mean_iou"] if best is None else max(best, val["val_mean_iou"])
                    bar.set_postfix_str(f"loss {window.losses[-1]:.3f}, val mIoU "
                                        f"{val['val_mean_iou']:.3f} (best {best:.3f})", refresh=True)
                _log_row(run, history, window, step, lr, val)
                last_saved = _save(sess, g, run, step, lr, history, val)
            elif step % config.log_every == 0:
                _log_row(run, history, window, step, lr)
            if not validating and step % config.checkpoint_every == 0:
                last_saved = _save(sess, g, run, step, lr, history)
            if stop.received:
                if window.steps:
                    _log_row(run, history, window, step, lr)
                if last_saved != step:
                    _save(sess, g, run, step, lr, history)
                run.writer.flush()
                bar.close()
                log(f"Stopped by signal {stop.received} at step {step}; checkpoint saved in "
                    f"{run.path}. Rerun the same command to resume.")
                raise KeyboardInterrupt(f"training stopped at step {step}")
    finally:
        bar.close()
    return pd.DataFrame(history, columns=list(HISTORY_COLUMNS))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

def _silent(*args, **kwargs) -> None:
    pass


def train(config: TrainConfig, out_dir, progress: bool = True, export: bool = True,
          log=print, wait: bool = False) -> pd.DataFrame:
    """Trains the run's model (SegNet, a decoder variant or U-Net), or resumes the run in ``out_dir``.

    Args:
        config: the :class:`~segnet_lib.config.TrainConfig`.
        out_dir: the run folder (created). If it holds a run of the same
            config, training continues from its newest checkpoint; if that run
            already reached ``config.steps``, nothing is trained.
        progress: show a tqdm progress bar (loss, pixel accuracy, images/s).
        export: when training finishes, write the frozen inference graph of the
            best checkpoint to ``out_dir/export`` (see
            :func:`segnet_lib.export.export_model`).
        log: where one-line messages go (``print``; ``None`` for silence).
        wait: if another process is training in ``out_dir``, wait for it
            (instead of failing), then resume or return its result.

    Returns:
        The history as a pandas DataFrame (also in ``out_dir/history.csv``).

    Raises:
        ValueError: a bad config, or ``out_dir`` holds a different run.
        FileNotFoundError: the data is missing.
        segnet_lib.checkpoints.RunInUse: another process trains in ``out_dir``.
        TrainingDiverged: the loss or a weight became NaN/inf.
        KeyboardInterrupt: after Ctrl-C or SIGTERM, once the checkpoint is saved.
    """
    log = log or _silent
    config.validate()
    run_dir = Path(out_dir)
    spec = cluster_spec(config.workers, config.worker_index)
    if spec is not None and spec["task"]["index"] != 0:
        return _train_alongside(config, run_dir, progress, log)
    check_run_dir(config, run_dir)
    with run_lock(run_dir, wait=wait):
        check_run_dir(config, run_dir)  # again, now that no one else writes here
        write_config(config, run_dir)
        found = checkpoint_dirs(run_dir)
        start_step, last_dir = found[-1] if found else (0, None)
        history = checkpoint_history(last_dir)
        if start_step < config.steps:
            (run_dir / DONE_FILE).unlink(missing_ok=True)
            frame = _train_from(config, run_dir, start_step, last_dir, history, progress, log)
        else:
            frame = write_history(run_dir / HISTORY_FILE, history)
        if export:
            export_if_stale(run_dir)
        (run_dir / DONE_FILE).touch()
        return frame


def _train_alongside(config: TrainConfig, run_dir: Path, progress: bool, log) -> pd.DataFrame:
    """A worker other than the chief: trains in step with it and writes nothing in ``run_dir``.

    It starts from the chief's newest checkpoint when ``run_dir`` (shared, or
    copied) holds one; its own files go to a temporary folder, deleted after.
    """
    found = checkpoint_dirs(run_dir) if run_dir.is_dir() else []
    start_step, last_dir = found[-1] if found else (0, None)
    with tempfile.TemporaryDirectory(prefix="segnet-worker-") as scratch:
        return _train_from(config, Path(scratch), start_step, last_dir,
                           checkpoint_history(last_dir), progress, log)


def _train_from(config: TrainConfig, run_dir: Path, start_step: int, last_dir: Optional[Path],
                history: list, progress: bool, log) -> pd.DataFrame:
    """Builds the graph, restores ``last_dir`` (or initialises) and runs the loop."""
    train_set, val_set = open_datasets(config)
    num_classes = train_set.num_classes
    weights = class_weights(config, train_set, run_dir)
    log(device_report())
    if start_step:
        log(f"Resuming {run_dir} from step {start_step} of {config.steps}")
        # Rows logged after that checkpoint (before a crash) are redone.
        write_history(run_dir / HISTORY_FILE, history)

    graph = tf.Graph()
    with graph.as_default():
        set_seed(config.seed)
        with enable_determinism(config.deterministic):
            cluster = make_cluster(config)
            if cluster.num_replicas > 1:
                log(f"Data-parallel: {cluster.num_replicas} replicas on {cluster.num_workers} "
                    f"worker(s); this is worker {cluster.worker_index}")
            g = build_graph(config, train_set, val_set, weights, start_step, num_classes,
                            cluster.strategy)
            init_fn = load_vgg16(config.vgg16_weights) if config.vgg16_weights and not start_step \
                else None
            # Workers log a checksum of their weights at the end: equal on all.
            checksum = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in tf.trainable_variables()]) \
                if cluster.num_workers > 1 else None
            graph.finalize()  # nothing may add ops inside the loop (a slow leak otherwise)
            writer = tf.summary.FileWriter(str(run_dir / SUMMARY_DIR),
                                           graph if not start_step else None)
            run = _Run(run_dir, writer, Checkpoints(run_dir, g.saver, config.keep_last), num_classes,
                       len(train_set))
            try:
                with tf.Session(cluster.target, config=cluster.config) as sess, \
                        StopSignals() as stop:
                    if last_dir is not None:
                        g.saver.restore(sess, str(last_dir / CHECKPOINT_BASENAME))
                        if g.train_iterator is not None:
                            sess.run(g.train_iterator.initializer)
                        restored = int(sess.run(g.step.global_step))
                        if restored != start_step:
                            raise ValueError(
                                f"{last_dir} holds global step {restored}, expected {start_step}")
                        # Events after this step (written before the crash) are orphans.
                        writer.add_session_log(tf.SessionLog(status=tf.SessionLog.START), start_step)
                    else:
                        sess.run(g.init)
                        if init_fn is not None:
                            init_fn(sess)
                    bar = tqdm(total=config.steps, initial=start_step, disable=not progress,
                               desc=run_dir.name, unit="step", file=sys.stderr, dynamic_ncols=True,
                               mininterval=1.0)
                    frame = _loop(sess, g, config, run, start_step, history, stop, bar, log)
                    if checksum is not None:
                        log(f"worker {cluster.worker_index} finished at step "
                            f"{int(sess.run(g.step.global_step))}: weights checksum "
                            f"{float(sess.run(checksum)):.6f}")
                    return frame
            finally:
                writer.close()
