"""Bayesian SegNet: Monte Carlo dropout inference, uncertainty and calibration.

Bayesian SegNet (Kendall, Badrinarayanan and Cipolla, 2015) keeps the dropout
layers of the central encoder and decoder switched on at test time. Each
forward pass then uses a different random thinning of the network, which
approximates a sample from the posterior over weights (Gal and Ghahramani,
2016). Averaging ``N`` such softmax outputs gives the prediction; how much the
samples disagree gives the model's uncertainty:

* **variance**: the variance of the softmax samples of each class, averaged
  over the classes (the "model uncertainty, averaged across all classes" of
  the Bayesian SegNet figures);
* **predictive entropy**: ``H[p] = -sum_c p_c log p_c`` of the mean
  probabilities (nats; at most ``log C``): high when the averaged prediction
  is spread over several classes, whether the samples agree or not;
* **mutual information**: entropy of the mean minus the mean entropy of the
  samples (the part of the entropy due to disagreement between samples).

The samples of one image are drawn as one batch (the image repeated ``N``
times): dropout draws an independent mask for every batch element, and batch
norm at test time uses its moving averages, so the batch elements do not
affect each other. Running sums keep memory at ``O(H * W * C)`` whatever ``N``.

:func:`accuracy_by_uncertainty` is the calibration view: sorted into bins of
uncertainty, pixels with higher uncertainty should be wrong more often.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np
import pandas as pd

__all__ = [
    "MCResult",
    "MCAccumulator",
    "predictive_entropy",
    "summarize_samples",
    "mc_dropout_predict",
    "accuracy_by_uncertainty",
    "UNCERTAINTY_MEASURES",
]

#: The per-pixel uncertainty maps an :class:`MCResult` carries.
UNCERTAINTY_MEASURES = ("variance", "entropy", "mutual_information")

# log(0) guard: p * log(p) -> 0 as p -> 0, and float32 softmax can give exact 0.
_EPS = 1e-12


class MCResult(NamedTuple):
    """Summary of ``num_samples`` Monte Carlo dropout passes over one image.

    Attributes:
        mean: float32 ``[H, W, C]`` mean softmax probabilities (the prediction).
        labels: int64 ``[H, W]`` ``argmax`` of ``mean``.
        variance: float32 ``[H, W]`` per-class sample variance, averaged over classes.
        entropy: float32 ``[H, W]`` predictive entropy of ``mean`` (nats).
        mutual_information: float32 ``[H, W]`` entropy minus the mean per-sample entropy.
        num_samples: how many passes were averaged.
    """

    mean: np.ndarray
    labels: np.ndarray
    variance: np.ndarray
    entropy: np.ndarray
    mutual_information: np.ndarray
    num_samples: int


def predictive_entropy(probs, axis: int = -1) -> np.ndarray:
    """Entropy ``-sum p log p`` (nats) along ``axis``.

    Args:
        probs: probabilities, e.g. float ``[H, W, C]``.
        axis: the class axis.

    Returns:
        float64 array without ``axis``; 0 for a one-hot distribution, ``log C``
        for the uniform one.
    """
    probs = np.asarray(probs, np.float64)
    return -np.sum(probs * np.log(np.maximum(probs, _EPS)), axis=axis)


class MCAccumulator:
    """Running sums over softmax samples: mean, variance, entropy, mutual information.

    Feed batches of samples of the *same* image with :meth:`update`, then call
    :meth:`result`. Sums are kept in float64 so that ``E[p^2] - E[p]^2`` does
    not lose the small variances to rounding.
    """

    def __init__(self):
        self.count = 0
        self._sum = self._sum_sq = self._sum_entropy = None

    def update(self, samples) -> None:
        """Adds samples.

        Args:
            samples: float ``[N, H, W, C]`` softmax outputs of ``N`` passes.

        Raises:
            ValueError: not 4-D, or a shape different from earlier samples.
        """
        samples = np.asarray(samples, np.float64)
        if samples.ndim != 4:
            raise ValueError(f"samples must be [N, H, W, C], got shape {samples.shape}")
        if self._sum is None:
            self._sum = np.zeros(samples.shape[1:])
            self._sum_sq = np.zeros(samples.shape[1:])
            self._sum_entropy = np.zeros(samples.shape[1:-1])
        elif samples.shape[1:] != self._sum.shape:
            raise ValueError(
                f"samples of shape {samples.shape[1:]} do not match earlier ones "
                f"{self._sum.shape}")
        self.count += samples.shape[0]
        self._sum += samples.sum(axis=0)
        self._sum_sq += np.square(samples).sum(axis=0)
        self._sum_entropy += predictive_entropy(samples).sum(axis=0)

    def result(self) -> MCResult:
        """The :class:`MCResult` of the samples so far."""
        if not self.count:
            raise ValueError("no samples: call update() first")
        mean = self._sum / self.count
        # Clip the tiny negative values that cancellation can leave.
        variance = np.maximum(self._sum_sq / self.count - np.square(mean), 0.0)
        entropy = predictive_entropy(mean)
        mutual_information = np.maximum(entropy - self._sum_entropy / self.count, 0.0)
        return MCResult(
            mean=mean.astype(np.float32),
            labels=mean.argmax(axis=-1).astype(np.int64),
            variance=variance.mean(axis=-1).astype(np.float32),
            entropy=entropy.astype(np.float32),
            mutual_information=mutual_information.astype(np.float32),
            num_samples=self.count,
        )


def summarize_samples(samples) -> MCResult:
    """:class:`MCResult` of float ``[N, H, W, C]`` softmax samples of one image."""
    accumulator = MCAccumulator()
    accumulator.update(samples)
    return accumulator.result()


def mc_dropout_predict(sample_fn: Callable[[np.ndarray], np.ndarray], image,
                       num_samples: int = 20, batch_size: Optional[int] = None) -> MCResult:
    """Monte Carlo dropout prediction of one image.

    Args:
        sample_fn: ``images uint8 [B, H, W, 3] -> softmax float [B, H, W, C]``
            with dropout on (a graph built with ``segnet(..., mc_dropout=True)``),
            so that each batch element is an independent sample.
        image: uint8 ``[H, W, 3]``.
        num_samples: the number ``N`` of passes (the paper uses up to 50; the
            mean IoU stops improving after about 40).
        batch_size: passes per call of ``sample_fn`` (default: all ``N`` at
            once); lower it when memory is short.

    Returns:
        The :class:`MCResult`.
    """
    if int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    batch_size = num_samples if batch_size is None else int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    accumulator = MCAccumulator()
    remaining = int(num_samples)
    while remaining:
        n = min(batch_size, remaining)
        samples = np.asarray(sample_fn(np.repeat(image[None], n, axis=0)))
        if samples.shape[:3] != (n,) + image.shape[:2]:
            raise ValueError(
                f"sample_fn returned shape {samples.shape} for {n} copies of an image of "
                f"shape {image.shape[:2]}; expected [{n}, {image.shape[0]}, {image.shape[1]}, C]")
        accumulator.update(samples)
        remaining -= n
    return accumulator.result()


def _flatten_scored(labels, predictions, uncertainty, ignore_label):
    """Concatenates the scored pixels of one map or of a list of maps."""
    if isinstance(labels, np.ndarray):
        labels, predictions, uncertainty = [labels], [predictions], [uncertainty]
    if not (len(labels) == len(predictions) == len(uncertainty)):
        raise ValueError(
            f"got {len(labels)} label maps, {len(predictions)} predictions and "
            f"{len(uncertainty)} uncertainty maps")
    correct, values = [], []
    for i, (lab, pred, unc) in enumerate(zip(labels, predictions, uncertainty)):
        lab, pred, unc = np.asarray(lab), np.asarray(pred), np.asarray(unc, np.float64)
        if not (lab.shape == pred.shape == unc.shape):
            raise ValueError(
                f"map {i}: label {lab.shape}, prediction {pred.shape} and uncertainty "
                f"{unc.shape} must have the same shape")
        if np.isnan(unc).any():
            raise ValueError(f"map {i}: the uncertainty has NaN values")
        scored = lab != ignore_label if ignore_label is not None else np.ones(lab.shape, bool)
        correct.append((lab == pred)[scored])
        values.append(unc[scored])
    return np.concatenate(correct), np.concatenate(values)


def accuracy_by_uncertainty(labels, predictions, uncertainty, bins: int = 10,
                            strategy: str = "quantile",
                            ignore_label: Optional[int] = 255) -> pd.DataFrame:
    """Pixel accuracy within bins of uncertainty (a calibration table).

    With a useful uncertainty the accuracy falls from bin to bin: the model
    knows when it is likely to be wrong.

    Args:
        labels: integer ground truth ``[H, W]`` or a list of such maps.
        predictions: the matching predicted class ids.
        uncertainty: the matching float uncertainty maps (e.g. ``MCResult.entropy``).
        bins: number of bins.
        strategy: ``'quantile'`` (bins with equal numbers of pixels, where the
            data allow: tied values stay in one bin) or ``'uniform'`` (equal
            widths between the smallest and largest value).
        ignore_label: ground-truth value of void pixels (left out), or None.

    Returns:
        DataFrame, one row per non-empty bin, with columns ``lower``, ``upper``
        (bin edges), ``mean_uncertainty``, ``pixels``, ``pixel_share``,
        ``accuracy``.

    Raises:
        ValueError: mismatched shapes, NaN uncertainty, no scored pixel, or a
            bad ``bins`` / ``strategy``.
    """
    if int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    correct, values = _flatten_scored(labels, predictions, uncertainty, ignore_label)
    if values.size == 0:
        raise ValueError("no scored pixel: every label is void")
    if strategy == "quantile":
        edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, int(bins) + 1)))
    elif strategy == "uniform":
        edges = np.linspace(values.min(), values.max(), int(bins) + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    if edges.size == 1:  # every pixel has the same uncertainty: one bin
        edges = np.array([edges[0], edges[0]])
    # Bins are [lower, upper) except the last, which includes its upper edge.
    which = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    pixels = np.bincount(which, minlength=edges.size - 1)
    hits = np.bincount(which, weights=correct, minlength=edges.size - 1)
    sums = np.bincount(which, weights=values, minlength=edges.size - 1)
    keep = pixels > 0
    table = pd.DataFrame({
        "lower": edges[:-1][keep],
        "upper": edges[1:][keep],
        "mean_uncertainty": sums[keep] / pixels[keep],
        "pixels": pixels[keep],
        "pixel_share": pixels[keep] / values.size,
        "accuracy": hits[keep] / pixels[keep],
    })
    table.index.name = "bin"
    return table
