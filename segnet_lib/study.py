"""The paper's decoder study, small: pooling indices against learned upsampling.

SegNet's central experiment (Badrinarayanan et al., TPAMI 2017, sec. 3 and
Table 1) trains one encoder with several decoders and weighs their accuracy
against what each must keep in memory between the encoder and the decoder:

=====================  ==================================  ===========================
``SegNetConfig.decoder``  the paper's name (SegNet-Basic encoder)  what the decoder keeps
=====================  ==================================  ===========================
``'unpool'``           SegNet-Basic                        max-pooling indices
``'deconv_add'``       FCN-Basic                           1x1 class scores of the
                                                           pooled encoder maps (float)
``'deconv'``           FCN-Basic-NoAddition                nothing
``'bilinear'``         Bilinear-Interpolation              nothing
``'unet'``             U-Net (not in the paper's table)    every encoder map before its
                                                           pool, whole (float)
=====================  ==================================  ===========================

The study the book shows is 15 reference runs (:mod:`segnet_lib.reference`,
``study/<decoder>-seed<k>``): every decoder of
:data:`segnet_lib.recipes.STUDY_DECODERS` trained with each of
:data:`~segnet_lib.recipes.STUDY_SEEDS` by one recipe
(:func:`segnet_lib.recipes.study_recipe`). :func:`study_runs` finds them (or
trains the same runs into a folder of one's own), :func:`score_runs` scores
them on the validation split (global and class-average accuracy, mean IoU,
boundary F1), :func:`summarise` gives mean and spread over the seeds, and
:func:`compare` calls a difference within the spread a tie (:data:`TIE_RULE`).

:func:`decoder_state` finds the stored state in the graph itself: every
image-dependent tensor computed without the encoder's final output that the
decoder still reads (pooling indices, encoder maps, shape vectors).
:func:`storage_readings` works out the paper's storage multiplier under two
readings of what FCN-Basic keeps, and :func:`measure_memory_table` measures the
peak memory of inference and of a training step (:mod:`segnet_lib.memory`),
shipped as ``reference/study/memory.csv`` because it depends on the machine.

:func:`run_study` is the one-seed study of ``python -m segnet_lib study``: it
trains, scores, counts and times every decoder in one table. The paper's own
numbers are in :data:`PAPER_TABLE1`.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from segnet_lib import export, memory, metrics, model, reference, sample_data, train
from segnet_lib._tf import tf
from segnet_lib.checkpoints import HISTORY_FILE, read_history
from segnet_lib.datasets import open_datasets
from segnet_lib.files import atomic_write_text, cache_dir
from segnet_lib.recipes import STUDY_DECODERS, STUDY_SEEDS, study_recipe

__all__ = [
    "DEFAULT_DECODERS", "PAPER_NAMES", "PAPER_TABLE1", "RESULT_COLUMNS", "MEASURES", "TIE_RULE",
    "decoder_state", "measure_model", "bottleneck", "time_per_image",
    "run_study", "study_dir", "paper_comparison",
    "study_runs", "score_runs", "summarise", "compare", "curves",
    "storage_readings", "paper_model_config", "measure_memory_table", "memory_path",
    "read_memory_table",
]

#: The decoders trained by default, in the order of the paper's discussion, U-Net's last.
DEFAULT_DECODERS = STUDY_DECODERS

#: ``SegNetConfig.decoder`` -> the paper's name of that decoder on the
#: SegNet-Basic encoder (Table 1; U-Net is discussed in the paper, not
#: tabulated).
PAPER_NAMES = {
    "unpool": "SegNet-Basic",
    "deconv_add": "FCN-Basic",
    "deconv": "FCN-Basic-NoAddition",
    "bilinear": "Bilinear-Interpolation",
    "unet": "U-Net",
}

# Table 1 of the paper (CamVid, 11 classes, 360x480 inputs, SegNet-Basic-sized
# encoders): parameters (millions), the "storage multiplier" (memory of the
# first-layer stored state relative to SegNet-Basic's indices; n/a in the
# paper for FCN-Basic-NoAddition), inference time (ms, Caffe on an NVIDIA
# Titan), and test / train accuracies in percent with median-frequency class
# balancing (the paper also lists natural-frequency results; see
# PAPER_TABLE1_NATURAL).
_PAPER_ROWS = [
    # name, params, storage, infer ms, test G, C, mIoU, BF, train G, C, mIoU
    ("Bilinear-Interpolation", 0.625, 0.0, 24.2, 77.9, 61.1, 43.3, 20.83, 89.1, 90.2, 82.7),
    ("SegNet-Basic", 1.425, 1.0, 52.6, 82.7, 62.0, 47.7, 35.78, 94.7, 96.2, 92.7),
    ("SegNet-Basic-EncoderAddition", 1.425, 64.0, 53.0, 83.4, 63.6, 48.5, 35.92, 94.3, 95.8, 92.0),
    ("SegNet-Basic-SingleChannelDecoder", 0.625, 1.0, 33.1, 81.2, 60.7, 46.1, 31.62, 93.2, 94.8, 90.3),
    ("FCN-Basic", 0.65, 11.0, 24.2, 81.7, 62.4, 47.3, 38.11, 92.8, 93.6, 88.1),
    ("FCN-Basic-NoAddition", 0.65, np.nan, 23.8, 80.5, 58.6, 44.1, 31.96, 92.5, 93.0, 87.2),
    ("FCN-Basic-NoDimReduction", 1.625, 64.0, 44.8, 84.1, 63.4, 50.1, 37.37, 95.1, 96.5, 93.2),
    ("FCN-Basic-NoAddition-NoDimReduction", 1.625, 0.0, 43.9, 80.5, 61.6, 45.9, 30.47, 92.5, 94.6, 89.9),
]
_PAPER_COLUMNS = ["params_m", "storage_multiplier", "infer_ms", "test_global_accuracy",
                  "test_class_accuracy", "test_mean_iou", "test_boundary_f1",
                  "train_global_accuracy", "train_class_accuracy", "train_mean_iou"]

#: The paper's Table 1 (median-frequency balancing), indexed by variant name;
#: accuracies in percent. ``storage_multiplier`` is NaN where the paper
#: prints "n/a" (FCN-Basic-NoAddition).
PAPER_TABLE1 = pd.DataFrame([r[1:] for r in _PAPER_ROWS], columns=_PAPER_COLUMNS,
                            index=pd.Index([r[0] for r in _PAPER_ROWS], name="variant"))

#: Table 1's natural-frequency columns (no class balancing), same rows.
PAPER_TABLE1_NATURAL = pd.DataFrame(
    [(82.7, 52.5, 43.8, 23.08, 93.5, 74.1, 59.9), (84.0, 54.6, 46.3, 36.67, 96.1, 83.9, 73.3),
     (84.2, 56.5, 47.7, 36.27, 95.3, 80.9, 68.9), (83.5, 53.9, 45.2, 32.45, 92.6, 68.4, 52.8),
     (83.9, 55.6, 45.0, 37.33, 92.0, 66.8, 50.7), (82.3, 53.9, 44.2, 29.43, 93.1, 72.8, 57.6),
     (83.5, 57.3, 47.0, 37.13, 97.2, 91.7, 84.8), (83.7, 54.8, 45.5, 33.17, 95.0, 80.2, 67.8)],
    columns=_PAPER_COLUMNS[3:], index=PAPER_TABLE1.index)

#: Columns of :func:`run_study`'s table, in order.
RESULT_COLUMNS = (
    "paper_name", "params", "decoder_params", "state_bytes", "state_bytes_2bit",
    "index_bytes", "feature_bytes", "global_accuracy", "class_accuracy", "mean_iou",
    "boundary_f1", "ms_per_image", "train_seconds", "final_loss",
)

RESULTS_FILE = "results.csv"
STUDY_FILE = "study.json"


# ---------------------------------------------------------------------------
# Stored state, found in the graph
# ---------------------------------------------------------------------------

def bottleneck(end_points):
    """The encoder's final output, which the decoder starts from.

    Args:
        end_points: the dict returned by :func:`segnet_lib.model.segnet`.

    Returns:
        The last pooled map (after its dropout, for the Bayesian variant).
        For U-Net, too: its bottleneck convolutions read that map, so what
        the decoder keeps is everything computed before it.
    """
    stages = [k for k in end_points if k.startswith("pool") and k[4:].isdigit()]
    if not stages:
        raise ValueError(f"end_points have no pool<N> entry: {list(end_points)[:8]}...")
    last = max(stages, key=lambda k: int(k[4:]))
    return end_points.get(f"{last}_dropout", end_points[last])


def _walk(start_ops, step):
    seen, todo = set(), list(start_ops)
    while todo:
        op = todo.pop()
        if op in seen:
            continue
        seen.add(op)
        todo.extend(step(op))
    return seen


def _descendants(tensors):
    return _walk([c for t in tensors for c in t.consumers()],
                 lambda op: [c for out in op.outputs for c in out.consumers()])


def _ancestors(tensors):
    return _walk([t.op for t in tensors],
                 lambda op: [t.op for t in op.inputs] + list(op.control_inputs))


def decoder_state(images, encoder_output, logits):
    """The tensors a decoder keeps from the encoder, found by walking the graph.

    A tensor is stored state when it depends on the image, is computed without
    ``encoder_output`` (so it exists before the decoder starts) and is read by
    the decoder (an op that depends on ``encoder_output`` and leads to
    ``logits``). For SegNet these are the pooling indices, for FCN-Basic the
    1x1 scores of the pooled encoder maps, for U-Net the encoder maps before
    each pool. Weights are not state (they do not
    depend on the image), nor are the pre-pool sizes the decoder needs: at a
    fully known input size TensorFlow folds them into constants.

    Args:
        images: the input tensor, with a fully known shape (batch 1 gives bytes
            per image).
        encoder_output: the decoder's input (:func:`bottleneck`).
        logits: the model's output.

    Returns:
        A DataFrame, one row per tensor: ``tensor`` (name), ``kind``
        (``'indices'``: integer maps of rank 4; ``'features'``: float maps;
        ``'shape'``: anything else, such as integer vectors), ``dtype``,
        ``shape``, ``elements``,
        ``bytes`` (as TensorFlow holds it) and ``bytes_2bit`` (indices packed
        at 2 bits each, the paper's count: a 2x2 window has 4 positions;
        other tensors unchanged).

    Raises:
        ValueError: a stored tensor's shape is not fully known.
    """
    image_ops = _descendants([images])
    after = _descendants([encoder_output])
    decoder_ops = after & _ancestors([logits])
    rows = {}
    for op in decoder_ops:
        for t in op.inputs:
            if t is encoder_output or t.op in after or t.op not in image_ops or t.name in rows:
                continue
            if not t.shape.is_fully_defined():
                raise ValueError(f"decoder_state: stored tensor {t.name} has shape {t.shape}; "
                                 "build the model on images of a fully known shape")
            shape = tuple(t.shape.as_list())
            elements = int(np.prod(shape, dtype=np.int64))
            nbytes = elements * t.dtype.size
            if t.dtype.is_integer and len(shape) == 4:
                kind, bytes_2bit = "indices", -(-2 * elements // 8)
            elif t.dtype.is_floating:
                kind, bytes_2bit = "features", nbytes
            else:
                kind, bytes_2bit = "shape", nbytes
            rows[t.name] = {"tensor": t.name, "kind": kind, "dtype": t.dtype.name, "shape": shape,
                            "elements": elements, "bytes": nbytes, "bytes_2bit": bytes_2bit}
    columns = ["tensor", "kind", "dtype", "shape", "elements", "bytes", "bytes_2bit"]
    table = pd.DataFrame(list(rows.values()), columns=columns)
    return table.sort_values(["kind", "bytes", "tensor"], ascending=[True, False, True],
                             ignore_index=True)


def measure_model(model_config, num_classes: int, image_size=(360, 480)) -> dict:
    """Parameters and decoder state of one model, built alone in a fresh graph.

    Args:
        model_config: a model config (:class:`segnet_lib.model.SegNetConfig`
            or :class:`segnet_lib.unet.UNetConfig`).
        num_classes: output classes.
        image_size: ``(height, width)`` of the one input image the state is
            counted for (the paper: CamVid's 360x480).

    Returns:
        A dict: ``params`` (trainable), ``decoder_params`` (everything not in
        the encoder's convolutions or the bottleneck), ``state_bytes`` /
        ``state_bytes_2bit`` (totals of :func:`decoder_state`), ``index_bytes``
        and ``feature_bytes`` (indices and float maps as TensorFlow stores
        them), and ``state``, the table itself.
    """
    plan = model.network(model_config)
    encoder_layers = {spec.name for stage in plan.architecture.encoder for spec in stage}
    encoder_layers |= {spec.name for spec in plan.architecture.bottleneck}
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, [1, int(image_size[0]), int(image_size[1]), 3], "images")
        logits, end_points = model.build(images, num_classes, is_training=False, config=model_config)
        state = decoder_state(images, bottleneck(end_points), logits)
        params = model.count_parameters(graph=graph)
        encoder = sum(model.count_parameters(f"{plan.scope}/{name}", graph)
                      for name in encoder_layers)
    by_kind = state.groupby("kind")["bytes"].sum()
    return {"params": params, "decoder_params": params - encoder,
            "state_bytes": int(state["bytes"].sum()), "state_bytes_2bit": int(state["bytes_2bit"].sum()),
            "index_bytes": int(by_kind.get("indices", 0)),
            "feature_bytes": int(by_kind.get("features", 0)), "state": state}


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

def time_per_image(predict_fns: Mapping[str, Callable], image, repeats: int = 10,
                   warmup: int = 2) -> dict:
    """Median seconds of one ``predict(image)`` call for each of several models.

    The models are timed in turns (one call of each per round), so a change in
    the machine's load during the measurement hits them all alike.

    Args:
        predict_fns: name -> ``fn(image)``.
        image: the input, e.g. uint8 ``[H, W, 3]``.
        repeats: timed rounds.
        warmup: untimed rounds first (graph optimisation, caches).

    Returns:
        name -> median seconds per image.
    """
    if repeats < 1:
        raise ValueError(f"time_per_image: repeats={repeats} must be >= 1")
    times = {name: [] for name in predict_fns}
    for round_ in range(warmup + repeats):
        for name, fn in predict_fns.items():
            began = time.perf_counter()
            fn(image)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


# ---------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------

def _decoder_config(base, decoder: str):
    return base.replace(model_options={**base.model_options, "decoder": decoder})


def study_dir(base, decoders: Sequence[str] = DEFAULT_DECODERS) -> Path:
    """The cache folder of a study: ``$SEGNET_CACHE_DIR/studies/decoders-<hash>``.

    The hash names the recipe, the decoders and (for ``data='sample'``) the
    sample data's version, so a changed recipe or regenerated sample data
    trains anew and an unchanged one is reused (training resumes or returns at
    once).
    """
    key = json.dumps({"recipe": base.fingerprint(), "decoders": list(decoders),
                      "sample_data": sample_data.SAMPLE_VERSION if base.data == "sample" else None},
                     sort_keys=True)
    return cache_dir() / "studies" / f"decoders-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def run_study(base=None, out_dir=None, decoders: Sequence[str] = DEFAULT_DECODERS,
              memory_size=(360, 480), eval_limit: Optional[int] = None, timing_repeats: int = 10,
              progress: bool = False, log: Optional[Callable] = print) -> pd.DataFrame:
    """Trains, scores and measures every decoder; writes ``results.csv``.

    Each decoder trains in ``out_dir/<decoder>`` with ``base`` (only
    ``model_options['decoder']`` differs), so data, augmentation, schedule and
    seed are the same. A folder that already holds the finished run is reused.
    The final checkpoint of each is scored on the whole validation split
    (``base.val_split``; the first ``eval_limit`` images if given) and timed on
    its first image.

    Args:
        base: a :class:`segnet_lib.config.TrainConfig` (default
            :func:`segnet_lib.recipes.study_recipe`\\ ``('cpu')``).
        out_dir: where the runs and ``results.csv`` go (default
            :func:`study_dir`).
        decoders: values of ``SegNetConfig.decoder``.
        memory_size: ``(height, width)`` at which the stored state is counted.
        eval_limit: score only the first N validation images.
        timing_repeats: timed rounds of inference per decoder.
        progress: show training progress bars.
        log: one-line messages (``None``: silent).

    Returns:
        A DataFrame indexed by decoder with :data:`RESULT_COLUMNS`: parameters,
        the stored state at ``memory_size`` in bytes, the validation scores
        (fractions in [0, 1]), the median inference time per image (ms), the
        training time (s, from the run's history) and the last logged loss.
    """
    base = study_recipe("cpu") if base is None else base
    unknown = [d for d in decoders if d not in model.DECODERS]
    if unknown or not decoders:
        raise ValueError(f"run_study: decoders {list(decoders)} must be a non-empty subset of "
                         f"{model.DECODERS}")
    out_dir = Path(out_dir) if out_dir is not None else study_dir(base, decoders)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda *a, **k: None)
    _, val_set = open_datasets(base)
    num_classes = val_set.num_classes

    rows, predictors = {}, {}
    try:
        for decoder in decoders:
            config = _decoder_config(base, decoder)
            run_dir = out_dir / decoder
            log(f"{decoder}: training in {run_dir}")
            history = train.train(config, run_dir, progress=progress, log=None, export=False)
            predictor = predictors[decoder] = export.load_predictor(run_dir, checkpoint="latest")
            evaluator = metrics.evaluate_dataset(predictor.predict, val_set, num_classes=num_classes,
                                                 limit=eval_limit)
            scores = evaluator.scores()
            measured = measure_model(config.model_config(), num_classes, memory_size)
            losses = history["loss"].dropna()
            rows[decoder] = {
                "paper_name": PAPER_NAMES.get(decoder, decoder),
                **{k: v for k, v in measured.items() if k != "state"},
                **{k: float(scores[k]) for k in ("global_accuracy", "class_accuracy", "mean_iou",
                                                 "boundary_f1")},
                "train_seconds": float(history["elapsed_seconds"].dropna().iloc[-1]),
                "final_loss": float(losses.iloc[-1]) if len(losses) else float("nan"),
            }
            log(f"{decoder}: mIoU {rows[decoder]['mean_iou']:.3f}")
        image = val_set[0][0]
        seconds = time_per_image({d: p.predict for d, p in predictors.items()}, image, timing_repeats)
    finally:
        for predictor in predictors.values():
            predictor.close()
    for decoder, value in seconds.items():
        rows[decoder]["ms_per_image"] = 1000.0 * value
    table = pd.DataFrame.from_dict(rows, orient="index")[list(RESULT_COLUMNS)]
    table.index.name = "decoder"
    atomic_write_text(out_dir / RESULTS_FILE, table.to_csv())
    info = {"recipe": base.to_dict(), "decoders": list(decoders), "memory_size": list(memory_size),
            "eval_images": int(len(val_set) if eval_limit is None else min(eval_limit, len(val_set))),
            "timing_image_shape": list(np.shape(image)), "timing_repeats": timing_repeats}
    atomic_write_text(out_dir / STUDY_FILE, json.dumps(info, indent=1))
    return table


def paper_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """The study's scores next to the paper's for the same variants.

    Args:
        results: :func:`run_study`'s table (or the CSV read back with
            ``index_col='decoder'``).

    Returns:
        One row per decoder: the paper's name, and for global accuracy (G),
        class-average accuracy (C), mean IoU and boundary F1 (BF) the paper's
        test value next to ours, all in percent; parameters in millions.
    """
    rows = []
    for decoder, row in results.iterrows():
        name = row["paper_name"]
        paper = PAPER_TABLE1.loc[name] if name in PAPER_TABLE1.index else None
        out = {"decoder": decoder, "variant (paper)": name,
               "params M (paper)": None if paper is None else paper["params_m"],
               "params M (ours)": row["params"] / 1e6}
        for ours, theirs, short in [("global_accuracy", "test_global_accuracy", "G"),
                                    ("class_accuracy", "test_class_accuracy", "C"),
                                    ("mean_iou", "test_mean_iou", "mIoU"),
                                    ("boundary_f1", "test_boundary_f1", "BF")]:
            out[f"{short} (paper)"] = None if paper is None else paper[theirs]
            out[f"{short} (ours)"] = 100.0 * row[ours]
        rows.append(out)
    return pd.DataFrame(rows).set_index("decoder")


# ---------------------------------------------------------------------------
# The multi-seed study: the reference runs, their scores, ties
# ---------------------------------------------------------------------------

#: Short name of each measure -> the key of :func:`segnet_lib.metrics.scores`.
MEASURES = {"G": "global_accuracy", "C": "class_accuracy", "mIoU": "mean_iou",
            "BF": "boundary_f1"}

#: When two decoders tie on a measure (:func:`compare`).
TIE_RULE = ("a tie when the difference of the two means is at most the larger of the two "
            "decoders' spreads (max - min over the seeds)")


def study_runs(out_dir=None, decoders: Sequence[str] = STUDY_DECODERS,
               seeds: Sequence[int] = STUDY_SEEDS, progress: bool = False,
               log: Optional[Callable] = None) -> dict:
    """The study's trained models: ``(decoder, seed) -> folder`` for :func:`score_runs`.

    Args:
        out_dir: None: the shipped reference runs (``reference/study/``).
            A folder: the same runs (the same recipes) trained there, in
            ``<out_dir>/<decoder>-seed<k>``; a finished run is reused, an
            interrupted one resumes.
        decoders, seeds: which runs.
        progress: training progress bars.
        log: one-line messages (None: silent).

    Returns:
        A dict ``(decoder, seed) -> folder`` that
        :func:`segnet_lib.export.load_predictor` reads.

    Raises:
        FileNotFoundError: a reference run is not shipped (the message names
            the command that makes it).
    """
    runs = {}
    for decoder in decoders:
        for seed in seeds:
            name = reference.study_name(decoder, seed)
            if out_dir is None:
                runs[decoder, seed] = reference.path(name)
                continue
            run_dir = Path(out_dir) / f"{decoder}-seed{seed}"
            if log:
                log(f"{name}: training in {run_dir}")
            train.train(reference.REFERENCE_RUNS[name].recipe(), run_dir, progress=progress,
                        log=None, export=False)
            runs[decoder, seed] = export.export_model(run_dir, out=run_dir / "export-latest",
                                                      checkpoint="latest", format="weights")
    return runs


def score_runs(runs: Mapping, val_set=None, progress: bool = False) -> pd.DataFrame:
    """Scores every run of the study on the validation split, live.

    Args:
        runs: ``(decoder, seed) -> folder`` (:func:`study_runs`).
        val_set: the images to score on (default: the study recipe's
            validation split, with its classes).
        progress: a progress bar per run.

    Returns:
        One row per run, indexed by ``(decoder, seed)``: the columns of
        :data:`MEASURES` (fractions in [0, 1]) and ``min_class_pixels``, the
        smallest number of validation pixels of a class (how much one
        pixel's label can move a class's score).
    """
    if val_set is None:
        _, val_set = open_datasets(study_recipe("cpu"))
    rows = {}
    for key, folder in runs.items():
        with export.load_predictor(folder) as predictor:
            if predictor.num_classes != val_set.num_classes:
                raise ValueError(f"{folder}: the model has {predictor.num_classes} classes, the "
                                 f"validation set {val_set.num_classes}")
            evaluator = metrics.evaluate_dataset(predictor.predict, val_set, progress=progress)
        scores = evaluator.scores()
        rows[key] = {**{short: float(scores[name]) for short, name in MEASURES.items()},
                     "min_class_pixels": int(evaluator.confusion.sum(1).min())}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["decoder", "seed"])
    return table


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (max - min) over the seeds of each decoder.

    Args:
        scores: :func:`score_runs`' table.

    Returns:
        Indexed by decoder (in the order of ``scores``), columns
        ``(measure, 'mean')`` and ``(measure, 'spread')`` for each measure of
        :data:`MEASURES`, and ``seeds``.
    """
    order = list(dict.fromkeys(scores.index.get_level_values("decoder")))
    grouped = scores[list(MEASURES)].groupby(level="decoder", sort=False)
    mean, spread = grouped.mean(), grouped.max() - grouped.min()
    out = pd.concat({"mean": mean, "spread": spread}, axis=1).swaplevel(axis=1)
    out = out[[(m, k) for m in MEASURES for k in ("mean", "spread")]].loc[order]
    out["seeds"] = grouped.size().loc[order]
    return out


def compare(summary: pd.DataFrame, a: str, b: str, measure: str) -> dict:
    """Compares two decoders on one measure by :data:`TIE_RULE`.

    Args:
        summary: :func:`summarise`' table.
        a, b: decoders (rows of ``summary``).
        measure: a key of :data:`MEASURES`.

    Returns:
        ``difference`` (mean of ``a`` minus mean of ``b``), ``spread`` (the
        larger of the two spreads), ``verdict`` (``'higher'``, ``'lower'``
        or ``'tie'``: ``a`` against ``b``) and ``margin`` (how far the
        difference is from the tie threshold: a verdict flips only if the
        scores move by about that much).
    """
    difference = float(summary.loc[a, (measure, "mean")] - summary.loc[b, (measure, "mean")])
    spread = float(max(summary.loc[a, (measure, "spread")], summary.loc[b, (measure, "spread")]))
    verdict = "tie" if abs(difference) <= spread else ("higher" if difference > 0 else "lower")
    return {"difference": difference, "spread": spread, "verdict": verdict,
            "margin": abs(abs(difference) - spread)}


def curves(runs: Mapping) -> pd.DataFrame:
    """The validation curves of the study's runs, from their training histories.

    Returns:
        Columns ``decoder``, ``seed``, ``step``, ``val_mean_iou``,
        ``val_loss``, one row per validation.
    """
    frames = []
    for (decoder, seed), folder in runs.items():
        folder = Path(folder)
        history = read_history(folder if (folder / HISTORY_FILE).is_file() else folder.parent)
        rows = history.dropna(subset=["val_mean_iou"])[["step", "val_mean_iou", "val_loss"]]
        frames.append(rows.assign(decoder=decoder, seed=seed))
    columns = ["decoder", "seed", "step", "val_mean_iou", "val_loss"]
    return pd.concat(frames, ignore_index=True)[columns]


# ---------------------------------------------------------------------------
# Memory: the storage multiplier's two readings, measured peaks
# ---------------------------------------------------------------------------

def storage_readings(features: int = 64, num_classes: int = 11,
                     image_size=(360, 480)) -> pd.DataFrame:
    """The paper's storage multiplier worked out under two readings of what is kept.

    The paper's multiplier compares the first (largest) map a decoder keeps
    with SegNet-Basic's max-pooling indices at 2 bits each (4 positions in a
    2x2 window). SegNet-Basic's indices of pool 1 are one 2-bit value per
    channel per pooled pixel, i.e. ``features * 2 / 4`` bits per pixel of the
    map *before* the pool. What FCN-Basic keeps can be read two ways:

    * ``'pooled maps'``: the class scores of the pooled encoder map (what
      this library builds, and what the paper's "1.9MB" for 11 scores at
      180x240 in float32 describes);
    * ``'pre-pool maps'``: the class scores at the resolution before the
      pool, four times as many values.

    Args:
        features: the first encoder stage's features (the paper: 64).
        num_classes: classes (the paper's CamVid: 11).
        image_size: ``(height, width)`` (the paper: 360x480).

    Returns:
        One row per (reading, variant): ``bits_per_pixel`` (bits kept per
        pixel of the full-size map), ``megabytes`` of the first kept map,
        ``multiplier`` (relative to SegNet-Basic's indices) and
        ``paper_multiplier`` (Table 1), and ``arithmetic``, the sum written out.
    """
    height, width = int(image_size[0]), int(image_size[1])
    pixels = height * width
    index_bits = features * 2 / 4  # 2 bits per channel per 2x2 window
    kept = {  # variant -> (values per full-size pixel under each reading, what)
        "SegNet-Basic": None,
        "FCN-Basic": (num_classes, f"{num_classes} class scores"),
        "SegNet-Basic-EncoderAddition": (features, f"{features} encoder features"),
        "FCN-Basic-NoDimReduction": (features, f"{features} encoder features"),
    }
    rows = []
    for reading, share in (("pooled maps", 0.25), ("pre-pool maps", 1.0)):
        for variant, what in kept.items():
            if what is None:
                bits = index_bits
                sum_ = (f"{features} channels x 2 bits per 2x2 window = {index_bits:g} bits "
                        "per pixel")
            else:
                bits = what[0] * 32 * share
                where = "each pooled pixel (1/4 of the pixels)" if share < 1 else "each pixel"
                sum_ = (f"{what[1]} x 32 bits at {where} = {bits:g} bits per pixel; "
                        f"/ {index_bits:g} = {bits / index_bits:g}")
            rows.append({"reading": reading, "variant": variant, "bits_per_pixel": bits,
                         "megabytes": bits * pixels / 8 / 1e6,
                         "multiplier": bits / index_bits,
                         "paper_multiplier": PAPER_TABLE1.loc[variant, "storage_multiplier"],
                         "arithmetic": sum_})
    return pd.DataFrame(rows).set_index(["reading", "variant"])


def paper_model_config(decoder: str):
    """SegNet-Basic as the paper sized it (64 features, 7x7) with ``decoder``."""
    return model.SegNetConfig(variant="segnet_basic", decoder=decoder)


def memory_path(root=None) -> Path:
    """Where the measured memory table ships: ``reference/study/memory.csv``."""
    return (Path(root) if root is not None else reference.reference_root()) / "study" / "memory.csv"


def measure_memory_table(decoders: Sequence[str] = STUDY_DECODERS, num_classes: int = 11,
                         image_size=(360, 480), batch_sizes: Sequence[int] = (1, 4),
                         steps: int = 1, log: Optional[Callable] = None) -> pd.DataFrame:
    """Peak memory of each decoder at the paper's size, measured in child processes.

    Every decoder on SegNet-Basic at the paper's size
    (:func:`paper_model_config`), in both modes of :mod:`segnet_lib.memory`
    (inference; a training step of SGD with momentum) at each batch size, one
    fresh process per measurement. The numbers depend on the machine (its
    thread count and instruction set), so the table also names the machine.

    Returns:
        :func:`segnet_lib.memory.memory_table`'s rows (``model`` is the
        decoder), with ``state_bytes`` (:func:`decoder_state`, per image),
        ``cpu`` and ``cores`` of the machine.
    """
    configs = {d: paper_model_config(d) for d in decoders}
    table = memory.memory_table(configs, num_classes, image_size, batch_sizes, log=log,
                                steps=steps)
    state = {d: measure_model(c, num_classes, image_size)["state_bytes"] for d, c in configs.items()}
    table["state_bytes"] = table["model"].map(state) * table["batch_size"]
    machine = reference.machine()
    table["cpu"], table["cores"] = machine["cpu"], machine["cores"]
    return table


def read_memory_table(root=None) -> pd.DataFrame:
    """The shipped memory table (:func:`measure_memory_table`, written by ``study --memory``).

    Raises:
        FileNotFoundError: not shipped (the message names the command that makes it).
    """
    path = memory_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; measure it with "
                                "`python -m segnet_lib study --memory`")
    return pd.read_csv(path)
