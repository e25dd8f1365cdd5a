"""Run-length encoded (RLE) masks, Kaggle style, and the CSV files that hold them.

A binary mask ``[height, width]`` is flattened to one long line of pixels and
written as space-separated pairs ``start length``: ``"3 2 9 4"`` means pixels
3, 4 and 9..12 are 1, every other pixel is 0. Starts are **1-based** (the first
pixel is 1, not 0). An empty string (or a missing CSV value) is an empty mask.

The flattening order is part of the format and cannot be seen in the string, so
every function here takes ``order`` with no default:

* ``order='F'`` (column-major, NumPy's Fortran order): pixels numbered from top
  to bottom, then left to right, so pixel 2 is the one *below* pixel 1. This is
  what the evaluation pages of Airbus Ship Detection, TGS Salt Identification and
  Severstal Steel Defect Detection describe ("1 is pixel (1,1), 2 is pixel
  (2,1)"), and how their public notebooks decode.
* ``order='C'`` (row-major): pixels numbered left to right, then top to bottom,
  so pixel 2 is the one to the *right* of pixel 1. The Carvana Image Masking
  ``train_masks.csv`` and the Sartorius cell instance segmentation ``train.csv``
  decode correctly this way (public solutions encode with a plain
  ``flatten()`` or reshape row-major, whatever the competition pages say), and
  so does this project's sample data.

COCO's run-length encoding (pycocotools' ``counts``) is another format:
alternating background and foreground run *lengths*, no starts, column-major,
beginning with a background run. :func:`from_coco_counts` turns it into the
Kaggle form; :func:`decode` would misread it without an error.

Decoding with the wrong order gives no error, only a mask that is mirrored
along the diagonal (square images) or scrambled (others); notebook 01 shows it.

The codec is vectorised NumPy throughout (no Python loop over runs or pixels);
the text itself is parsed and written by :mod:`segnet_lib.rle_text`, eight
digits at a time. See ``benchmarks/bench_rle.py`` for the measured speed-ups.

Label maps: :func:`decode_label_map` paints several RLE rows of one image into
one ``[height, width]`` array, each row with its class id (semantic
segmentation) or instance id, parsing the rows together (a competition row is
often a single cell of a few dozen runs, where the cost per call, not the
digits, is the time; ``benchmarks/bench_csv.py`` measures a whole CSV);
:func:`encode_label_map` does the reverse. CSV
files of RLE strings (such as the seed project's ``train.csv``) are read and
written by :mod:`segnet_lib.rle_csv`.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from segnet_lib.rle_text import format_ints, parse_ints

__all__ = ["ORDERS", "OVERLAP_POLICIES", "decode", "encode", "to_runs", "decode_label_map",
           "encode_label_map", "from_coco_counts", "check_order", "check_shape", "check_overlap",
           "is_missing"]

#: The two pixel orders: ``'C'`` row-major, ``'F'`` column-major.
ORDERS = ("C", "F")
#: What :func:`decode_label_map` does where two rows cover the same pixel.
OVERLAP_POLICIES = ("error", "first", "last")


# ----------------------------------------------------------------------------
# Arguments (shared with segnet_lib.rle_csv)
# ----------------------------------------------------------------------------

def check_order(order) -> str:
    """Returns ``order`` if it is ``'C'`` or ``'F'``; else ValueError explaining both."""
    if order not in ORDERS:
        raise ValueError(
            f"order must be 'C' (row-major: left to right, then top to bottom) or "
            f"'F' (column-major: top to bottom, then left to right), got {order!r}")
    return order


def check_shape(shape) -> tuple[int, int]:
    """``(height, width)`` as two non-negative ints; ValueError naming a bad ``shape``."""
    try:
        h, w = (_as_int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width) of two integers, got {shape!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"shape must be non-negative, got {shape!r}")
    return h, w


def check_overlap(overlap) -> str:
    """Returns ``overlap`` if it is one of :data:`OVERLAP_POLICIES`; else ValueError."""
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    return overlap


def _as_int(value) -> int:
    """``int(value)`` for integral numbers (NumPy ints, integral floats); else ValueError."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def is_missing(rle) -> bool:
    """True for the values that stand for an empty mask besides ``''``: None, NaN, ``pd.NA``."""
    if rle is None or rle is pd.NA:
        return True
    return isinstance(rle, (float, np.floating)) and math.isnan(rle)


# ----------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------

def _check_runs(starts: np.ndarray, lengths: np.ndarray, shape: tuple[int, int]) -> None:
    """Raises ValueError unless the 0-based runs are positive, in order, disjoint and inside."""
    if starts.size == 0:
        return
    bad = starts < 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"run {i + 1} has start {starts[i] + 1} < 1 (starts are 1-based)")
    bad = lengths < 1
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"run {i + 1} (start {starts[i] + 1}) has length {lengths[i]} < 1")
    ends = starts + lengths
    bad = starts[1:] < ends[:-1]
    if bad.any():
        i = int(np.argmax(bad))
        what = "is out of order: it starts before" if starts[i + 1] < starts[i] else "overlaps"
        raise ValueError(
            f"run {i + 2} (start {starts[i + 1] + 1}, length {lengths[i + 1]}) {what} "
            f"run {i + 1} (start {starts[i] + 1}, length {lengths[i]}); runs must be "
            f"sorted and disjoint")
    n = shape[0] * shape[1]
    bad = ends > n
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"run {i + 1} (start {starts[i] + 1}, length {lengths[i]}) ends at pixel "
            f"{ends[i]}, past the last pixel {n} of a {shape[0]}x{shape[1]} image")


def to_runs(rle, shape) -> tuple[np.ndarray, np.ndarray]:
    """Parses and checks an RLE string into 0-based starts and lengths.

    Args:
        rle: ``"start length ..."`` with 1-based starts; ``''``, None or NaN
            for an empty mask.
        shape: ``(height, width)`` of the image, for the past-the-end check.

    Returns:
        ``(starts, lengths)``: two int64 arrays ``[num_runs]``; ``starts`` are
        0-based flat pixel indices.

    Raises:
        ValueError: an odd number of values, a non-integer, a start < 1, a
            length < 1, runs out of order or overlapping, or a run past the end
            of the image.
        TypeError: ``rle`` is not a string (or missing value).
    """
    shape = check_shape(shape)
    if is_missing(rle):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not isinstance(rle, str):
        raise TypeError(f"an RLE must be a string, None or NaN, got {type(rle).__name__}")
    if not rle or rle.isspace():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = parse_ints(rle)
    if values.size % 2:
        raise ValueError(
            f"odd number of values ({values.size}): an RLE is pairs of 'start length'")
    starts = values[0::2] - 1
    lengths = values[1::2]
    _check_runs(starts, lengths, shape)
    return starts, lengths


def _paint(starts, lengths, values, n: int, dtype) -> np.ndarray:
    """Flat ``[n]`` array: ``values[i]`` on run ``i``, 0 elsewhere. Runs sorted and disjoint.

    One ``np.repeat`` of the alternating gap/run values: no loop over runs,
    and (unlike a +1/-1 difference array and a cumsum) one pass over the output.
    """
    k = starts.size
    if k == 0:
        return np.zeros(n, dtype)
    ends = starts + lengths
    counts = np.empty(2 * k + 1, np.int64)
    counts[0] = starts[0]
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[-1] = n - ends[-1]
    counts[1::2] = lengths
    fill = np.zeros(2 * k + 1, dtype)
    fill[1::2] = values
    return np.repeat(fill, counts)


def _unflatten(flat: np.ndarray, shape, order: str) -> np.ndarray:
    if order == "C":
        return flat.reshape(shape)
    return flat.reshape(shape[::-1]).T  # a Fortran-contiguous view, no copy


def _change_points(m: np.ndarray, order: str) -> np.ndarray:
    """Sorted flat indices ``p`` (in ``order``) with ``flat[p] != flat[p - 1]``, 1 <= p < size."""
    if order == "F":
        m = m.T  # F-order of m is C-order of m.T
    if m.flags.f_contiguous and not m.flags.c_contiguous:
        # Compare along the contiguous axis instead of paying for a transposed
        # copy: neighbours within a row of m are neighbours down a column of a.
        a = m.T
        i, j = np.divmod(np.flatnonzero(a[1:] != a[:-1]), a.shape[1])
        inner = j * a.shape[0] + i + 1
        wrap = (np.flatnonzero(a[-1, :-1] != a[0, 1:]) + 1) * a.shape[0]  # row end -> next row
        return np.sort(np.concatenate([inner, wrap]))
    flat = np.ascontiguousarray(m).reshape(-1)
    return np.flatnonzero(flat[1:] != flat[:-1]) + 1


def _check_binary(m: np.ndarray) -> None:
    if m.dtype == np.bool_ or m.size == 0:
        return
    if m.dtype.kind in "iu":
        ok = m.max() <= 1 and (m.dtype.kind == "u" or m.min() >= 0)
    elif m.dtype.kind == "f":
        ok = bool(((m == 0) | (m == 1)).all())
    else:
        raise ValueError(f"mask must be boolean or numeric, got dtype {m.dtype}")
    if not ok:
        other = m[(m != 0) & (m != 1)].flat[0].item()
        raise ValueError(
            f"mask must hold only 0 and 1, found {other!r}; threshold it first, or use "
            f"encode_label_map for a label map")


def _check_2d(m: np.ndarray, what: str) -> None:
    if m.ndim != 2:
        raise ValueError(f"{what} must be 2-D [height, width], got shape {m.shape}")


# ----------------------------------------------------------------------------
# Binary masks
# ----------------------------------------------------------------------------

def decode(rle, shape, order: str) -> np.ndarray:
    """Decodes a Kaggle RLE string into a binary mask.

    Args:
        rle: ``"start length start length ..."``, starts 1-based; ``''``, None
            or NaN (a missing CSV value) for an empty mask.
        shape: ``(height, width)`` of the image.
        order: ``'C'`` (row-major) or ``'F'`` (column-major); see the module
            docstring for which data uses which. There is no default on purpose.

    Returns:
        uint8 ``[height, width]`` of 0 and 1. For ``order='F'`` the array is a
        Fortran-contiguous view (like pycocotools' masks); use
        ``np.ascontiguousarray`` if you need C layout.

    Raises:
        ValueError: a bad order or shape, or a malformed RLE (odd number of
            values, non-integer, start < 1, length < 1, runs out of order or
            overlapping, a run past the end of the image). Nothing is clipped.
    """
    check_order(order)
    shape = check_shape(shape)
    starts, lengths = to_runs(rle, shape)
    return _unflatten(_paint(starts, lengths, 1, shape[0] * shape[1], np.uint8), shape, order)


def encode(mask, order: str) -> str:
    """Encodes a binary mask as a Kaggle RLE string.

    Args:
        mask: ``[height, width]`` of 0/1 (bool, integer or float).
        order: ``'C'`` (row-major) or ``'F'`` (column-major); no default.

    Returns:
        ``"start length ..."`` with 1-based starts, sorted, with a gap between
        runs (the canonical form: ``encode(decode(s)) == s``); ``''`` for an
        all-zero mask.

    Raises:
        ValueError: a bad order, a mask that is not 2-D or holds values other
            than 0 and 1.
    """
    check_order(order)
    m = np.asarray(mask)
    _check_2d(m, "mask")
    _check_binary(m)
    if m.size == 0:
        return ""
    bounds = _change_points(m, order)
    # The first and last pixels are the same in both orders.
    head = [np.zeros(1, np.int64)] if m[0, 0] else []
    tail = [np.full(1, m.size, np.int64)] if m[-1, -1] else []
    if head or tail:
        bounds = np.concatenate(head + [bounds] + tail)
    bounds[1::2] -= bounds[0::2]  # ends -> lengths
    bounds[0::2] += 1  # 0-based -> 1-based starts
    return format_ints(bounds)


def from_coco_counts(counts, shape) -> str:
    """Converts COCO's uncompressed RLE ``counts`` into a Kaggle RLE string.

    pycocotools stores a mask as the lengths of alternating runs of 0s and 1s
    over the column-major pixel line, starting with a run of 0s (of length 0
    when the first pixel is set): ``[2, 3, 1, 1]`` is ``0 0 1 1 1 0 1``. The
    Kaggle form lists each run of 1s as ``start length``, so the starts are the
    running sums of the lengths before each run of 1s, plus 1.

    Args:
        counts: the ``'counts'`` list of an uncompressed COCO RLE: non-negative
            integers summing to ``height * width``.
        shape: ``(height, width)``, COCO's ``'size'``.

    Returns:
        The RLE string in column-major order: decode it with
        ``decode(text, shape, 'F')``.

    Raises:
        ValueError: a negative or non-integer count, or counts that do not
            cover the image exactly.
        TypeError: a compressed COCO string; decode that with pycocotools
            (``pycocotools.mask.decode``) and encode the mask with
            ``encode(mask, 'F')``.
    """
    if isinstance(counts, (str, bytes)):
        raise TypeError("counts is a compressed COCO string; decode it with "
                        "pycocotools.mask.decode and encode the mask with rle.encode(mask, 'F')")
    h, w = check_shape(shape)
    try:
        lengths = np.array([_as_int(c) for c in counts], np.int64)
    except ValueError as err:
        raise ValueError(f"COCO counts must be integers: {err}") from None
    if (lengths < 0).any():
        i = int(np.argmax(lengths < 0))
        raise ValueError(f"COCO count {i} is {lengths[i]} < 0")
    if lengths.sum() != h * w:
        raise ValueError(f"COCO counts sum to {lengths.sum()}, not {h * w} = {h}x{w} pixels")
    ends = np.cumsum(lengths)
    starts, runs = ends[1::2] - lengths[1::2], lengths[1::2]  # the runs of 1s
    keep = runs > 0
    pairs = np.empty(2 * int(keep.sum()), np.int64)
    pairs[0::2] = starts[keep] + 1  # 1-based
    pairs[1::2] = runs[keep]
    return format_ints(pairs)


# ----------------------------------------------------------------------------
# Label maps
# ----------------------------------------------------------------------------

def _row_value(value, dtype, label: str) -> int:
    if isinstance(value, np.generic):
        value = value.item()  # so messages show 2.5, not np.float64(2.5)
    try:
        v = _as_int(value)
    except ValueError:
        raise ValueError(f"{label}: value {value!r} is not an integer class or instance id") from None
    top = np.iinfo(dtype).max
    if not 1 <= v <= top:
        hint = "; 0 is the background" if v == 0 else (
            f"; pass a wider dtype such as np.uint16" if v > top else "")
        raise ValueError(f"{label}: value {v} is outside 1..{top} for {np.dtype(dtype).name}{hint}")
    return v


def decode_label_map(rles: Sequence, values: Sequence, shape, order: str, *,
                     overlap: str = "error", dtype=np.uint8,
                     row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Paints several RLE rows of one image into one label map.

    Each row is one mask with its value: a class id (semantic segmentation,
    e.g. one row per VOC class present) or an instance id (one row per object).
    Rows with an empty RLE add nothing (their value is not checked).

    Overlaps. Two rows covering the same pixel are handled by ``overlap``:

    * ``'error'`` (default): raise a ValueError naming both rows. Right for
      semantic masks, where a pixel has one class.
    * ``'last'``: the later row wins (like painting the rows in order).
    * ``'first'``: the earlier row wins (keep what is already there).

    Args:
        rles: RLE strings (or None/NaN), one per row.
        values: the id of each row, integers in ``1..max(dtype)``.
        shape: ``(height, width)``.
        order: ``'C'`` or ``'F'``, as in :func:`decode`.
        overlap: ``'error'``, ``'last'`` or ``'first'``.
        dtype: integer dtype of the result; np.uint16 for more than 255 instances.
        row_labels: how to name each row in error messages (e.g. the CSV file
            and line); default ``'row i'``.

    Returns:
        ``dtype`` ``[height, width]`` label map, 0 where no row paints
        (Fortran-contiguous for ``order='F'``, as in :func:`decode`).

    Raises:
        ValueError: a malformed RLE or value (naming its row), mismatched
            lengths, an unknown overlap policy, or (``overlap='error'``) two
            rows that overlap.
    """
    check_order(order)
    shape = check_shape(shape)
    check_overlap(overlap)
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"dtype must be an integer type, got {dtype}")
    rles = list(rles)
    values = list(values)
    if len(rles) != len(values):
        raise ValueError(f"{len(rles)} RLE rows but {len(values)} values")
    labels = list(row_labels) if row_labels is not None else [f"row {i}" for i in range(len(rles))]
    n = shape[0] * shape[1]
    runs = _runs_together(rles, n)
    if runs is None:  # a row the fast path cannot vouch for: parse one by one, naming the culprit
        runs = []
        for row, rle in enumerate(rles):
            try:
                starts, lengths = to_runs(rle, shape)
            except (ValueError, TypeError) as err:
                raise type(err)(f"{labels[row]}: {err}") from None
            if starts.size:
                runs.append((row, starts, lengths))
    parsed = [(row, starts, lengths, _row_value(values[row], dtype, labels[row]))
              for row, starts, lengths in runs]  # (row, starts, lengths, value)
    if not parsed:
        return _unflatten(np.zeros(n, dtype), shape, order)
    if overlap == "error":
        flat = _paint_disjoint(parsed, n, dtype, labels)
    else:
        flat = np.zeros(n, dtype)
        painting = parsed if overlap == "last" else parsed[::-1]
        for _, starts, lengths, value in painting:  # a loop over rows, not runs
            flat[_run_pixels(starts, lengths)] = value
    return _unflatten(flat, shape, order)


_IRREGULAR_SPACE = ("  ", "\t", "\n", "\r", "\x0b", "\x0c")


def _runs_together(rles, n: int):
    """``[(row, starts, lengths), ...]`` of the rows with runs, parsed and checked at once; or None.

    A CSV row is often short (a cell: a few dozen runs), and then the fixed
    cost of each parse and check, not the digits, is the time. So the rows
    are joined into one string, parsed once and checked with a few array
    operations; each row's share is known from its count of separators. This
    holds only for plain text (single spaces between integers), and every
    check must pass: otherwise None, and the caller parses row by row, which
    names the first bad row.
    """
    texts, rows = [], []
    for row, rle in enumerate(rles):
        if is_missing(rle):
            continue
        if not isinstance(rle, str) or rle != rle.strip():
            return None
        if rle:
            texts.append(rle)
            rows.append(row)
    if not texts:
        return []
    joined = " ".join(texts)
    if not joined.isascii() or any(c in joined for c in _IRREGULAR_SPACE):
        return None
    try:
        numbers = parse_ints(joined)
    except ValueError:
        return None
    counts = np.fromiter((t.count(" ") + 1 for t in texts), np.int64, len(texts))
    if counts.sum() != numbers.size or (counts % 2).any():
        return None
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    ends = starts + lengths
    pair_row = np.repeat(np.arange(len(texts)), counts // 2)
    # Within a row, runs are sorted and disjoint; across rows, anything goes.
    if (starts.min() < 0 or lengths.min() < 1 or ends.max() > n
            or ((pair_row[1:] == pair_row[:-1]) & (starts[1:] < ends[:-1])).any()):
        return None
    bounds = np.concatenate([[0], np.cumsum(counts // 2)])
    return [(row, starts[lo:hi], lengths[lo:hi]) for row, lo, hi in zip(rows, bounds[:-1], bounds[1:])]


def _run_pixels(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat indices of every pixel of the runs, without a loop over runs."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _paint_disjoint(parsed, n: int, dtype, labels) -> np.ndarray:
    """All rows' runs merged by start; raises if any two overlap; one paint."""
    if len(parsed) == 1:
        _, starts, lengths, value = parsed[0]
        return _paint(starts, lengths, value, n, dtype)
    starts = np.concatenate([p[1] for p in parsed])
    lengths = np.concatenate([p[2] for p in parsed])
    sizes = [p[1].size for p in parsed]
    rows = np.repeat(np.array([p[0] for p in parsed]), sizes)
    values = np.repeat(np.array([p[3] for p in parsed], dtype=np.int64), sizes)
    by_start = np.argsort(starts, kind="stable")
    starts, lengths, rows, values = (a[by_start] for a in (starts, lengths, rows, values))
    # Sorted by start, any overlap shows up between neighbours.
    clash = starts[1:] < (starts + lengths)[:-1]
    if clash.any():
        i = int(np.argmax(clash))
        a, b = sorted((int(rows[i]), int(rows[i + 1])))
        raise ValueError(
            f"{labels[a]} and {labels[b]} overlap (at pixel {starts[i + 1] + 1}); "
            f"pass overlap='last' or overlap='first' to let one of them win")
    return _paint(starts, lengths, values.astype(dtype), n, dtype)


def encode_label_map(label_map, order: str, ignore: Iterable[int] = (0, 255)) -> dict[int, str]:
    """Encodes a label map as one RLE string per value present.

    Args:
        label_map: integer ``[height, width]`` (class or instance ids).
        order: ``'C'`` or ``'F'``.
        ignore: values not to encode: by default the background 0 and VOC's
            void label 255.

    Returns:
        ``{value: rle}`` sorted by value, one entry per value present and not
        ignored; ``decode(rle, shape, order)`` gives ``label_map == value``.

    Raises:
        ValueError: a bad order, or a label map that is not 2-D integers.
    """
    check_order(order)
    m = np.asarray(label_map)
    _check_2d(m, "label map")
    if m.dtype.kind not in "iub":
        raise ValueError(f"label map must hold integers, got dtype {m.dtype}")
    if m.size == 0:
        return {}
    h, w = m.shape
    # Maximal runs of equal value: each starts at 0 or at a change point.
    seg_starts = np.concatenate([np.zeros(1, np.int64), _change_points(m, order)])
    seg_lengths = np.diff(seg_starts, append=m.size)
    if order == "C":
        seg_values = m[seg_starts // w, seg_starts % w]
    else:
        seg_values = m[seg_starts % h, seg_starts // h]
    keep = ~np.isin(seg_values, list(ignore))
    seg_starts, seg_lengths, seg_values = seg_starts[keep], seg_lengths[keep], seg_values[keep]
    by_value = np.argsort(seg_values, kind="stable")  # keeps each value's runs in order
    classes, first = np.unique(seg_values[by_value], return_index=True)
    bounds = np.append(first, by_value.size)
    out = {}
    for c, lo, hi in zip(classes.tolist(), bounds[:-1], bounds[1:]):  # a loop over values
        pick = by_value[lo:hi]
        pairs = np.empty(2 * pick.size, np.int64)
        pairs[0::2] = seg_starts[pick] + 1
        pairs[1::2] = seg_lengths[pick]
        out[int(c)] = format_ints(pairs)
    return out
