"""Segmentation metrics: confusion matrix, accuracies, IoU and boundary F1.

Everything is computed from integer label maps with NumPy, so the same code
scores one image, a batch, or (through :class:`Evaluator`) a whole split by
summing confusion matrices. These are the measures of the SegNet paper
(Badrinarayanan et al., 2017, Sec. 4) and of the PASCAL VOC benchmark:

* **global accuracy**: correctly classified pixels / all labelled pixels;
* **class-average accuracy**: the mean over classes of the per-class recall;
* **IoU** of a class: TP / (TP + FP + FN); **mean IoU** averages it over classes;
* **frequency-weighted IoU**: per-class IoU weighted by the class's share of
  the ground-truth pixels;
* **boundary F1 (BF score)**: precision / recall of the predicted class
  boundaries against the true ones, within a pixel tolerance (Csurka et al.,
  2013), averaged per image as the SegNet paper does.

Conventions (the same for every function here):

* Pixels whose ground truth equals ``ignore_label`` (VOC: 255, "void") are left
  out of every count, whatever was predicted there.
* A class that appears neither in the ground truth nor in the prediction has no
  defined IoU (0 / 0): its entry in ``per_class_iou`` is NaN and it is left out
  of ``mean_iou``. A class that is predicted but absent from the ground truth
  has IoU 0 and *does* count (it is a real false positive).
* The accuracy of a class is its recall, TP / (ground-truth pixels), and is
  NaN (and left out of ``class_accuracy``) when the class has no ground-truth
  pixels: there is nothing to recall.
* When there is nothing to score at all (every pixel void) every summary number
  is NaN rather than a misleading 0 or 1.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

__all__ = [
    "confusion_matrix",
    "scores",
    "boundary_f1",
    "image_boundary_f1",
    "class_boundary",
    "dilate_disk",
    "default_tolerance",
    "scores_table",
    "summary_table",
    "Evaluator",
    "evaluate_dataset",
    "SUMMARY_KEYS",
]

#: The scalar entries of :func:`scores` (and of :meth:`Evaluator.scores`), in
#: the order tables print them.
SUMMARY_KEYS = ("global_accuracy", "class_accuracy", "mean_iou", "fw_iou", "boundary_f1")

#: Fraction of the image diagonal used as the BF tolerance by the SegNet paper.
BF_TOLERANCE_FRACTION = 0.0075


def _check_labels(name: str, values: np.ndarray, num_classes: int,
                  ignore_label: Optional[int]) -> None:
    """Raises ValueError naming the first value outside ``[0, num_classes)``."""
    if values.dtype.kind not in "iu":
        raise ValueError(
            f"{name} must be an integer array of class ids, got dtype {values.dtype}")
    bad = (values < 0) | (values >= num_classes)
    if ignore_label is not None:
        bad &= values != ignore_label
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        allowed = f"[0, {num_classes})"
        if ignore_label is not None:
            allowed += f" or the ignore label {ignore_label}"
        raise ValueError(
            f"{name} contains the value {int(values[where])} at index {where}; "
            f"expected class ids in {allowed}")


def _check_num_classes(num_classes) -> int:
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def confusion_matrix(labels, predictions, num_classes: int,
                     ignore_label: Optional[int] = 255) -> np.ndarray:
    """Counts (ground truth, prediction) pairs over all labelled pixels.

    One ``np.bincount`` over ``num_classes * label + prediction`` does the work:
    each pair of classes gets its own bin, and the counts reshape into the
    matrix. Summing the matrices of several images gives the matrix of the
    whole set, which is how split-level scores are computed.

    Args:
        labels: integer ground truth of any shape, e.g. ``[height, width]`` or
            ``[batch, height, width]``; ``ignore_label`` marks void pixels.
        predictions: integer class ids, same shape as ``labels``. Every value
            must be a class id (a prediction cannot be "void").
        num_classes: number of classes ``C``.
        ignore_label: ground-truth value to skip; None to skip nothing.

    Returns:
        int64 ``[C, C]``: entry ``[i, j]`` counts pixels of true class ``i``
        predicted as class ``j`` (rows = ground truth, columns = prediction).

    Raises:
        ValueError: shapes differ, arrays are not integers, or a value is not a
            class id (the message names it and its index).
    """
    num_classes = _check_num_classes(num_classes)
    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same shape, got {labels.shape} "
            f"and {predictions.shape}")
    _check_labels("labels", labels, num_classes, ignore_label)
    _check_labels("predictions", predictions, num_classes, None)
    valid = labels != ignore_label if ignore_label is not None else np.ones(labels.shape, bool)
    # int64 first: uint8 labels times 21 would overflow.
    index = num_classes * labels[valid].astype(np.int64) + predictions[valid].astype(np.int64)
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise division that gives NaN (not a warning) where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    values = np.asarray(values, np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def scores(confusion) -> dict:
    """The SegNet / VOC measures from a confusion matrix.

    Args:
        confusion: ``[C, C]`` counts, rows = ground truth (as returned by
            :func:`confusion_matrix`, possibly summed over many images).

    Returns:
        A dict with

        * ``global_accuracy`` (float): sum of the diagonal / all pixels.
        * ``class_accuracy`` (float): mean of ``per_class_accuracy`` over the
          classes present in the ground truth.
        * ``mean_iou`` (float): mean of ``per_class_iou`` over the classes
          present in the ground truth or the prediction.
        * ``fw_iou`` (float): ``sum_c freq(c) * IoU(c)`` with ``freq(c)`` the
          share of ground-truth pixels of class ``c``.
        * ``per_class_accuracy``, ``per_class_iou``, ``per_class_precision``
          (float64 ``[C]``, NaN where undefined: see the module docstring).
        * ``gt_pixels``, ``predicted_pixels`` (int64 ``[C]``), ``num_pixels``
          (int): the counts behind the ratios.

    Raises:
        ValueError: ``confusion`` is not square or has negative entries.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must be a square [C, C] matrix, got shape {confusion.shape}")
    if (confusion < 0).any():
        raise ValueError("confusion has negative counts; it must hold pixel counts")
    confusion = confusion.astype(np.int64)
    true_positive = np.diag(confusion)
    gt_pixels = confusion.sum(axis=1)
    predicted_pixels = confusion.sum(axis=0)
    total = int(confusion.sum())
    union = gt_pixels + predicted_pixels - true_positive

    per_class_iou = _safe_divide(true_positive, union)
    per_class_accuracy = _safe_divide(true_positive, gt_pixels)
    if total:
        frequency = gt_pixels / total
        # A class with no ground-truth pixels has weight 0, so its IoU (0 or NaN)
        # must not turn the sum into NaN.
        fw_iou = float(np.sum(frequency[gt_pixels > 0] * per_class_iou[gt_pixels > 0]))
        global_accuracy = float(true_positive.sum() / total)
    else:
        fw_iou = global_accuracy = math.nan
    return {
        "global_accuracy": global_accuracy,
        "class_accuracy": _nanmean(per_class_accuracy),
        "mean_iou": _nanmean(per_class_iou),
        "fw_iou": fw_iou,
        "per_class_accuracy": per_class_accuracy,
        "per_class_iou": per_class_iou,
        "per_class_precision": _safe_divide(true_positive, predicted_pixels),
        "gt_pixels": gt_pixels,
        "predicted_pixels": predicted_pixels,
        "num_pixels": total,
    }


# --------------------------------------------------------------------------
# Boundary F1
# --------------------------------------------------------------------------

def default_tolerance(shape: Sequence[int]) -> float:
    """The SegNet paper's BF tolerance: 0.75% of the image diagonal, in pixels.

    Args:
        shape: ``(height, width, ...)`` of the image.

    Returns:
        The tolerance in pixels (about 4.7 for a 500x375 VOC image).
    """
    return BF_TOLERANCE_FRACTION * math.hypot(shape[0], shape[1])


def class_boundary(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide inner boundary of a binary mask.

    A pixel is on the boundary when it belongs to the mask and one of its four
    neighbours does not. The image edge is not a boundary: the BF score asks
    where one class meets another, and the frame cuts through objects.

    Args:
        mask: bool ``[height, width]``.

    Returns:
        bool ``[height, width]``.
    """
    mask = np.asarray(mask, bool)
    edge = np.zeros_like(mask)
    edge[:-1] |= mask[:-1] & ~mask[1:]
    edge[1:] |= mask[1:] & ~mask[:-1]
    edge[:, :-1] |= mask[:, :-1] & ~mask[:, 1:]
    edge[:, 1:] |= mask[:, 1:] & ~mask[:, :-1]
    return edge


def _dilate_rows(mask: np.ndarray, half_width: int) -> np.ndarray:
    """Marks pixels with a mask pixel at most ``half_width`` columns away in their row."""
    out = mask.copy()
    covered = 0  # out now marks pixels within `covered` columns of the mask
    while covered < half_width:
        # OR-ing a copy shifted by s <= covered + 1 each way extends the reach
        # by s without gaps, so the reach roughly doubles per pass.
        step = min(covered + 1, half_width - covered)
        grown = out.copy()
        grown[:, step:] |= out[:, :-step]
        grown[:, :-step] |= out[:, step:]
        out = grown
        covered += step
    return out


def dilate_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Grows a binary mask by a disk: marks every pixel within ``radius`` of it.

    "Within a Euclidean distance ``r`` of some pixel of the mask" is exactly
    "inside the mask dilated by a disk of radius ``r``", so this replaces the
    distance transform of the original BF code, in plain NumPy and exactly.
    The disk is cut into its rows: row ``dy`` spans ``|dx| <= sqrt(r^2 - dy^2)``,
    so the dilation is an OR over ``dy`` of the mask dilated along its rows by
    that half-width and shifted by ``dy`` rows: about ``2r + 2 log2(r)`` array
    passes instead of the ``pi r^2`` of one shift per disk offset.

    Args:
        mask: bool ``[height, width]``.
        radius: non-negative distance in pixels.

    Returns:
        bool ``[height, width]``.
    """
    mask = np.asarray(mask, bool)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    height = mask.shape[0]
    reach = min(int(math.floor(radius)), height - 1)
    rows = {}
    out = np.zeros_like(mask)
    for dy in range(-reach, reach + 1):
        # Largest integer dx with dx^2 + dy^2 <= r^2 (exact in integers).
        half = math.isqrt(int(math.floor(radius * radius)) - dy * dy) \
            if radius * radius >= dy * dy else -1
        if half < 0:
            continue
        if half not in rows:
            rows[half] = _dilate_rows(mask, min(half, mask.shape[1]))
        grown = rows[half]
        # out[y + dy] |= grown[y] on the overlapping rows.
        out[max(dy, 0):height + min(dy, 0)] |= grown[max(-dy, 0):height + min(-dy, 0)]
    return out


def image_boundary_f1(label: np.ndarray, prediction: np.ndarray, num_classes: int,
                      tolerance: Optional[float] = None,
                      ignore_label: Optional[int] = 255) -> np.ndarray:
    """Per-class boundary F1 of one image.

    For each class ``c`` present in the ground truth: ``B_gt`` and ``B_pred``
    are the boundaries (:func:`class_boundary`) of ``label == c`` and
    ``prediction == c``; precision is the share of ``B_pred`` within
    ``tolerance`` of ``B_gt``, recall the share of ``B_gt`` within
    ``tolerance`` of ``B_pred``, and F1 = 2PR / (P + R).

    Void pixels count as "another label" when finding the true boundaries, so
    an object ringed by VOC's 5-pixel void band has its boundary at the band's
    inner edge; a prediction that cuts through the middle of the band is then
    2-3 pixels away, inside the paper's tolerance for VOC-sized images.

    Edge cases: a class whose true and predicted boundaries are both empty (for
    example one class filling the image) scores 1; if exactly one of them is
    empty it scores 0 (the class was missed, or boundaries were invented).

    Args:
        label: integer ``[height, width]`` ground truth (``ignore_label`` = void).
        prediction: integer ``[height, width]`` class ids.
        num_classes: number of classes ``C``.
        tolerance: match distance in pixels; None for the SegNet paper's 0.75%
            of the image diagonal (:func:`default_tolerance`).
        ignore_label: ground-truth value of void pixels, or None.

    Returns:
        float64 ``[C]``: F1 per class, NaN for classes absent from the ground
        truth (the paper averages over the classes present in the ground truth).
    """
    label = np.asarray(label)
    prediction = np.asarray(prediction)
    if label.ndim != 2:
        raise ValueError(f"label must be one [height, width] map, got shape {label.shape}")
    if label.shape != prediction.shape:
        raise ValueError(
            f"label and prediction must have the same shape, got {label.shape} "
            f"and {prediction.shape}")
    num_classes = _check_num_classes(num_classes)
    _check_labels("label", label, num_classes, ignore_label)
    _check_labels("prediction", prediction, num_classes, None)
    if tolerance is None:
        tolerance = default_tolerance(label.shape)
    # Classes in the ground truth (bincount: much faster than np.unique here).
    counts = np.bincount(label.ravel(), minlength=num_classes)[:num_classes]
    if ignore_label is not None and 0 <= ignore_label < num_classes:
        counts[ignore_label] = 0
    present = np.flatnonzero(counts)
    f1 = np.full(num_classes, np.nan)
    for c in present:
        true_edge = class_boundary(label == c)
        pred_edge = class_boundary(prediction == c)
        n_true, n_pred = int(true_edge.sum()), int(pred_edge.sum())
        if n_true == 0 and n_pred == 0:
            f1[c] = 1.0
            continue
        if n_true == 0 or n_pred == 0:
            f1[c] = 0.0
            continue
        precision = np.count_nonzero(pred_edge & dilate_disk(true_edge, tolerance)) / n_pred
        recall = np.count_nonzero(true_edge & dilate_disk(pred_edge, tolerance)) / n_true
        f1[c] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return f1


def boundary_f1(labels, predictions, num_classes: int, tolerance: Optional[float] = None,
                ignore_label: Optional[int] = 255) -> float:
    """Mean BF score over images, as in the SegNet paper.

    Each image's score is the mean of :func:`image_boundary_f1` over the classes
    present in its ground truth; the result is the mean over images. Images
    with no labelled pixel are skipped.

    Args:
        labels: integer ``[height, width]``, ``[batch, height, width]``, or a
            sequence of ``[height, width]`` maps of varying sizes.
        predictions: the matching predicted class ids.
        num_classes: number of classes ``C``.
        tolerance: pixels, or None for 0.75% of each image's diagonal.
        ignore_label: ground-truth value of void pixels, or None.

    Returns:
        The mean BF score in [0, 1]; NaN when no image has a labelled pixel.
    """
    per_image = [_nanmean(image_boundary_f1(lab, pred, num_classes, tolerance, ignore_label))
                 for lab, pred in _pairs(labels, predictions)]
    return _nanmean(np.array(per_image))


def _pairs(labels, predictions):
    """Yields ``(label, prediction)`` 2-D pairs from single maps, batches or lists."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        labels, predictions = [labels], [predictions]
    elif isinstance(labels, np.ndarray) and labels.ndim != 3:
        raise ValueError(
            f"labels must be [height, width] or [batch, height, width], got shape {labels.shape}")
    labels, predictions = list(labels), list(predictions)
    if len(labels) != len(predictions):
        raise ValueError(
            f"got {len(labels)} label maps but {len(predictions)} predictions")
    return zip(labels, predictions)


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------

def summary_table(score_dict: dict, decimals: Optional[int] = 3) -> pd.DataFrame:
    """The scalar measures as a one-column table (global / class accuracy, IoUs, BF).

    Args:
        score_dict: from :func:`scores` or :meth:`Evaluator.scores`.
        decimals: round to this many places (None: no rounding).

    Returns:
        DataFrame indexed by measure name with one column ``value``.
    """
    rows = {key: score_dict[key] for key in SUMMARY_KEYS if key in score_dict}
    table = pd.DataFrame({"value": pd.Series(rows, dtype=float)})
    table.index.name = "measure"
    return table.round(decimals) if decimals is not None else table


def scores_table(score_dict: dict, class_names: Optional[Sequence[str]] = None,
                 decimals: Optional[int] = 3) -> pd.DataFrame:
    """Per-class table: IoU, accuracy (recall), precision and pixel counts.

    Args:
        score_dict: from :func:`scores` or :meth:`Evaluator.scores`.
        class_names: one name per class (default ``class 0``, ``class 1``, ...).
        decimals: round the ratios to this many places (None: no rounding).

    Returns:
        DataFrame indexed by class name; NaN marks an undefined ratio.
    """
    num_classes = len(score_dict["per_class_iou"])
    if class_names is None:
        class_names = [f"class {c}" for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"got {len(class_names)} class names for {num_classes} classes")
    table = pd.DataFrame({
        "iou": score_dict["per_class_iou"],
        "accuracy": score_dict["per_class_accuracy"],
        "precision": score_dict["per_class_precision"],
        "gt_pixels": score_dict["gt_pixels"],
        "predicted_pixels": score_dict["predicted_pixels"],
    }, index=pd.Index(list(class_names), name="class"))
    if "per_class_boundary_f1" in score_dict:
        table.insert(3, "boundary_f1", score_dict["per_class_boundary_f1"])
    if decimals is not None:
        ratios = [c for c in table.columns if not c.endswith("_pixels")]
        table[ratios] = table[ratios].round(decimals)
    return table


# --------------------------------------------------------------------------
# Whole splits
# --------------------------------------------------------------------------

class Evaluator:
    """Accumulates the scores of a whole split, one image (or batch) at a time.

    The confusion matrix is summed over images, so split-level accuracies and
    IoUs weight every pixel equally (the VOC convention); the BF score and the
    per-image table are kept per image, so the best and worst images can be
    found afterwards.

    Example::

        ev = Evaluator(num_classes=21)
        for image, label in dataset:
            ev.update(label, predict(image).argmax(-1))
        ev.scores()["mean_iou"]

    Args:
        num_classes: number of classes ``C``.
        ignore_label: ground-truth value of void pixels, or None.
        boundary: also compute the per-image BF score (costs a few ms per image).
        tolerance: BF tolerance in pixels; None for 0.75% of the diagonal.
    """

    def __init__(self, num_classes: int, ignore_label: Optional[int] = 255,
                 boundary: bool = True, tolerance: Optional[float] = None):
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_label = ignore_label
        self.boundary = boundary
        self.tolerance = tolerance
        self.reset()

    def reset(self) -> None:
        """Forgets everything accumulated so far."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        self._records = []
        self._boundary_rows = []

    def __len__(self) -> int:
        return len(self._records)

    def update(self, labels, predictions, image_ids=None) -> list:
        """Adds one image or a batch.

        Args:
            labels: integer ``[height, width]`` or ``[batch, height, width]`` (or
                a list of maps of different sizes).
            predictions: matching class ids (take ``argmax(-1)`` of
                probabilities first).
            image_ids: an id (single image) or a list of ids; defaults to the
                running image number.

        Returns:
            The per-image score dicts that were added.
        """
        pairs = list(_pairs(np.asarray(labels) if not isinstance(labels, (list, tuple))
                            else labels, predictions))
        if image_ids is None:
            image_ids = [len(self._records) + i for i in range(len(pairs))]
        elif isinstance(image_ids, (str, int, np.integer)):
            image_ids = [image_ids]
        if len(image_ids) != len(pairs):
            raise ValueError(f"got {len(image_ids)} image ids for {len(pairs)} images")
        added = []
        for image_id, (label, prediction) in zip(image_ids, pairs):
            confusion = confusion_matrix(label, prediction, self.num_classes, self.ignore_label)
            self.confusion += confusion
            image_scores = scores(confusion)
            record = {
                "image_id": image_id,
                "global_accuracy": image_scores["global_accuracy"],
                "class_accuracy": image_scores["class_accuracy"],
                "mean_iou": image_scores["mean_iou"],
                "labelled_pixels": image_scores["num_pixels"],
            }
            if self.boundary:
                per_class = image_boundary_f1(label, prediction, self.num_classes,
                                              self.tolerance, self.ignore_label)
                self._boundary_rows.append(per_class)
                record["boundary_f1"] = _nanmean(per_class)
            self._records.append(record)
            added.append(record)
        return added

    def scores(self) -> dict:
        """:func:`scores` of the summed confusion matrix, plus the BF score.

        With ``boundary=True`` the dict also has ``boundary_f1`` (mean over
        images of the per-image BF) and ``per_class_boundary_f1`` (per class,
        mean over the images whose ground truth contains the class).
        """
        result = scores(self.confusion)
        if self.boundary:
            if self._boundary_rows:
                rows = np.vstack(self._boundary_rows)
                counts = (~np.isnan(rows)).sum(axis=0)
                per_class = _safe_divide(np.nansum(rows, axis=0), counts)
                per_image = np.array([r["boundary_f1"] for r in self._records])
                result["boundary_f1"] = _nanmean(per_image)
            else:
                per_class = np.full(self.num_classes, np.nan)
                result["boundary_f1"] = math.nan
            result["per_class_boundary_f1"] = per_class
        return result

    def per_image(self) -> pd.DataFrame:
        """One row per image: id, global / class accuracy, mean IoU, BF, pixel count."""
        columns = ["image_id", "global_accuracy", "class_accuracy", "mean_iou",
                   "labelled_pixels"] + (["boundary_f1"] if self.boundary else [])
        return pd.DataFrame(self._records, columns=columns)


def evaluate_dataset(predict: Callable[[np.ndarray], np.ndarray], dataset,
                     num_classes: Optional[int] = None, limit: Optional[int] = None,
                     ignore_label: Optional[int] = 255, boundary: bool = True,
                     tolerance: Optional[float] = None, progress: bool = False) -> Evaluator:
    """Runs a predictor over a dataset and accumulates its scores.

    Args:
        predict: ``image uint8 [H, W, 3] -> probabilities float [H, W, C]`` (for
            example ``Predictor.predict``) or ``-> class ids int [H, W]``.
        dataset: indexable with ``len(dataset)`` and ``dataset[i] -> (image,
            mask)``, like :class:`segnet_lib.datasets.VOCSegmentation`; its ``.ids``
            (when present) name the rows of :meth:`Evaluator.per_image`.
        num_classes: defaults to ``dataset.num_classes``.
        limit: evaluate only the first ``limit`` images.
        ignore_label, boundary, tolerance: as for :class:`Evaluator`.
        progress: show a tqdm progress bar.

    Returns:
        The filled :class:`Evaluator`.
    """
    if num_classes is None:
        num_classes = getattr(dataset, "num_classes", None)
        if num_classes is None:
            raise ValueError("num_classes is needed: the dataset has no .num_classes")
    count = len(dataset) if limit is None else min(limit, len(dataset))
    ids = list(getattr(dataset, "ids", range(len(dataset))))
    evaluator = Evaluator(num_classes, ignore_label, boundary, tolerance)
    indices: Iterable[int] = range(count)
    if progress:
        indices = tqdm(indices, desc="evaluate", unit="img")
    for i in indices:
        image, mask = dataset[i]
        output = np.asarray(predict(image))
        if output.ndim == 3:
            output = output.argmax(axis=-1)
        if output.shape != np.shape(mask):
            raise ValueError(
                f"prediction for image {ids[i]!r} has shape {output.shape}, its mask "
                f"{np.shape(mask)}")
        evaluator.update(mask, output, image_ids=ids[i])
    return evaluator
