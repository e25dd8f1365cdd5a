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

:func:`run_study` trains every decoder with :func:`segnet_lib.train.train` on the
same data, schedule and seed, scores the final weights on the validation split
with :mod:`segnet_lib.metrics` (global and class-average accuracy, mean IoU,
boundary F1), and measures parameters, the decoder's stored state and the
inference time per image. :func:`decoder_state` finds the stored state in the
graph itself: every image-dependent tensor computed without the encoder's
final output that the decoder still reads (pooling indices, encoder maps,
shape vectors).

The paper's own numbers are in :data:`PAPER_TABLE1`.
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

from segnet_lib import export, metrics, model, sample_data, train
from segnet_lib._tf import tf
from segnet_lib.datasets import open_datasets
from segnet_lib.files import atomic_write_text, cache_dir
from segnet_lib.recipes import study_recipe

__all__ = [
    "DEFAULT_DECODERS", "PAPER_NAMES", "PAPER_TABLE1", "RESULT_COLUMNS",
    "decoder_state", "measure_model", "bottleneck", "time_per_image",
    "run_study", "study_dir", "paper_comparison",
]

#: The decoders trained by default, in the order of the paper's discussion.
DEFAULT_DECODERS = ("unpool", "deconv_add", "deconv", "bilinear")

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
