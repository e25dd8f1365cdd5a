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
  (2,1)"), and what pycocotools uses for its counts.
* ``order='C'`` (row-major): pixels numbered left to right, then top to bottom,
  so pixel 2 is the one to the *right* of pixel 1. The Sartorius cell instance
  segmentation ``train.csv`` decodes correctly this way (its evaluation page
  repeats the column-major sentence; the public notebooks reshape row-major),
  and so does this project's sample data.

Decoding with the wrong order gives no error, only a mask that is mirrored
along the diagonal (square images) or scrambled (others); notebook 01 shows it.

The codec is vectorised NumPy throughout (no Python loop over runs or pixels).
Turning the text into integers is the dominant cost of decoding a large mask,
so :func:`decode` parses the ASCII bytes itself (eight digits at a time in one
64-bit word) instead of ``str.split`` plus ``int``, and :func:`encode` writes
the digits with table lookups instead of ``' '.join(map(str, ...))``. See
``benchmarks/bench_rle.py`` for the measured speed-ups.

Label maps: :func:`decode_label_map` paints several RLE rows of one image into
one ``[height, width]`` array, each row with its class id (semantic
segmentation) or instance id; :func:`encode_label_map` does the reverse. The CSV
helpers :func:`read_csv`, :func:`iter_label_maps` and :func:`write_csv` read and
write files such as the seed project's ``train.csv``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

#: The two pixel orders: ``'C'`` row-major, ``'F'`` column-major.
ORDERS = ("C", "F")
#: What :func:`decode_label_map` does where two rows cover the same pixel.
OVERLAP_POLICIES = ("error", "first", "last")

# Column names that read_csv recognises, in order of preference (compared
# case-insensitively). Seed project: id, annotation; Kaggle: ImageId,
# EncodedPixels, ClassId.
ID_COLUMNS = ("id", "image_id", "imageid", "img_id", "image", "filename", "file_name")
RLE_COLUMNS = ("rle", "annotation", "encodedpixels", "encoded_pixels", "rle_mask",
               "segmentation", "predicted")
CLASS_COLUMNS = ("class", "class_id", "classid", "category_id", "label")

_U64 = np.uint64
_ALL_ONES = _U64(0xFFFFFFFFFFFFFFFF)
_SPACE_MINUS_ZERO = np.uint8((ord(" ") - ord("0")) & 0xFF)
_MAX_FAST_DIGITS = 16  # two 64-bit words; 10**16 pixels is more than any image
_TOKEN = re.compile(r"-?[0-9]+\Z")  # ASCII digits only: \d would accept other scripts


# ----------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------

def _check_order(order) -> str:
    if order not in ORDERS:
        raise ValueError(
            f"order must be 'C' (row-major: left to right, then top to bottom) or "
            f"'F' (column-major: top to bottom, then left to right), got {order!r}")
    return order


def _check_shape(shape) -> tuple[int, int]:
    try:
        h, w = (_as_int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width) of two integers, got {shape!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"shape must be non-negative, got {shape!r}")
    return h, w


def _as_int(value) -> int:
    """``int(value)`` for integral numbers (NumPy ints, integral floats); else ValueError."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _is_missing(rle) -> bool:
    if rle is None or rle is pd.NA:
        return True
    return isinstance(rle, (float, np.floating)) and math.isnan(rle)


# ----------------------------------------------------------------------------
# Text <-> integers
# ----------------------------------------------------------------------------

def _swar_parse(words: np.ndarray) -> np.ndarray:
    """Values of eight ASCII-minus-'0' digits per uint64 word, first digit in the lowest byte.

    The classic SWAR reduction: combine neighbouring digits into 2-digit, then
    4-digit, then 8-digit numbers with three multiply-shift steps, all lanes
    at once. Leading positions must hold digit 0.
    """
    words = ((words & _U64(0x0F0F0F0F0F0F0F0F)) * _U64(2561)) >> _U64(8)
    words = ((words & _U64(0x00FF00FF00FF00FF)) * _U64(6553601)) >> _U64(16)
    return ((words & _U64(0x0000FFFF0000FFFF)) * _U64(42949672960001)) >> _U64(32)


def _parse_fast(text: str):
    """Integers of ``"12 345 6"``-style text (single spaces, ASCII digits), or None."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    n = len(raw)
    # 16 zero bytes in front, so the 16-byte window that ends at any token
    # stays inside the buffer; they read as leading zeros.
    buf = np.zeros(n + 16, np.uint8)
    digits = buf[16:]
    np.subtract(np.frombuffer(raw, np.uint8), np.uint8(ord("0")), out=digits)
    seps = np.flatnonzero(digits > 9)
    if np.count_nonzero(digits == _SPACE_MINUS_ZERO) != seps.size:
        return None  # something other than digits and spaces
    ends = np.empty(seps.size + 1, np.int64)
    ends[:-1] = seps
    ends[-1] = n
    lengths = np.empty_like(ends)
    lengths[0] = ends[0]
    np.subtract(ends[1:], seps + 1, out=lengths[1:])
    if lengths.min() < 1 or lengths.max() > _MAX_FAST_DIGITS:
        return None  # doubled, leading or trailing spaces, or very long tokens
    # words[p] is the little-endian uint64 of buf[p:p + 8]: an unaligned
    # strided view, so reading a token's last eight characters is one gather.
    words = np.ndarray((n + 9,), dtype="<u8", buffer=buf, strides=(1,))
    low_len = np.minimum(lengths, 8).astype(np.uint64)
    low = words[ends + 8] & (_ALL_ONES << ((_U64(8) - low_len) * _U64(8)))
    values = _swar_parse(low)
    if lengths.max() > 8:
        high_len = np.clip(lengths - 8, 0, 8).astype(np.uint64)
        keep = np.where(high_len > 0, _ALL_ONES << ((_U64(8) - np.maximum(high_len, 1)) * _U64(8)),
                        _U64(0))
        values += _swar_parse(words[ends] & keep) * _U64(10**8)
    return values.astype(np.int64)


def _parse_ints(text: str) -> np.ndarray:
    """int64 array of the whitespace-separated integers in ``text``.

    Raises:
        ValueError: a token that is not a (possibly negative) decimal integer,
            or one too large to be a pixel number.
    """
    values = _parse_fast(text)
    if values is None:  # tabs, newlines, doubled spaces: normalise and retry
        values = _parse_fast(" ".join(text.split()))
    if values is not None:
        return values
    # Rare inputs only (bad tokens, minus signs, very long numbers): find and
    # name the culprit.
    tokens = text.split()
    for i, token in enumerate(tokens):
        if not _TOKEN.match(token):
            raise ValueError(f"value {i + 1} ({token[:20]!r}) is not an integer")
        if len(token.lstrip("-").lstrip("0")) > 18:
            raise ValueError(f"value {i + 1} ({token[:20]}...) is too large for a pixel number")
    return np.array([int(t) for t in tokens], dtype=np.int64)


def _digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables: 4-digit group -> its ASCII bytes as a little-endian word.

    ``LEAD[g]`` / ``LAST[g]`` for a group with no nonzero group before it: leading
    zeros become NUL bytes (``LEAD[0]`` is all NUL, ``LAST[0]`` is ``'0'``, so the
    number 0 still prints). ``[g + 10000]``: a group after a nonzero one, all four
    digits kept.
    """
    n = np.arange(10_000)
    digits = np.stack([(n // 10**p) % 10 for p in (3, 2, 1, 0)], axis=1)  # first digit first
    ascii_bytes = (digits + ord("0")).astype(np.uint64) << (np.arange(4, dtype=np.uint64) * _U64(8))
    width = 1 + (n >= 10) + (n >= 100) + (n >= 1000)
    trimmed = np.where(np.arange(4) >= (4 - width)[:, None], ascii_bytes, 0).sum(axis=1)
    full = ascii_bytes.sum(axis=1)
    lead = trimmed.copy()
    lead[0] = 0
    return (np.concatenate([lead, full]).astype(np.uint64),
            np.concatenate([trimmed, full]).astype(np.uint64))


_LEAD_GROUP, _LAST_GROUP = _digit_tables()


def _format_ints(values: np.ndarray) -> str:
    """``' '.join(map(str, values))`` for non-negative integers, vectorised.

    Each value is cut into 4-digit groups; two table lookups per 8 digits give
    fixed-width ASCII with the leading zeros as NUL bytes; a space is appended;
    ``bytes.translate`` then drops the NULs in C.
    """
    if values.size == 0:
        return ""
    v = np.asarray(values).astype(np.uint64)
    top = int(v.max())
    if top >= 10**16:
        raise ValueError(f"value {top} is too large for a pixel number")
    if top < 10**8:
        high = v * _U64(3518437209)  # multiply-shift: exactly v // 10_000 for v < 2**32
        high >>= _U64(45)
        groups = [high, v - high * _U64(10_000)]
    else:  # over 10**8 pixels: rare, so plain division is fine
        groups = [(v // _U64(10 ** (4 * k))) % _U64(10_000) for k in (3, 2, 1, 0)]
    words, started = [], np.zeros(v.size, bool)
    for k, group in enumerate(groups):  # a loop over digit groups, not over values
        table = _LAST_GROUP if k == len(groups) - 1 else _LEAD_GROUP
        word = table[group + started * _U64(10_000)]
        started |= group > 0
        if k % 2:
            words[-1] |= word << _U64(32)
        else:
            words.append(word)
    rows = np.empty(v.size, dtype=[(f"w{k}", "<u8") for k in range(len(words))] + [("sep", "u1")])
    for k, word in enumerate(words):
        rows[f"w{k}"] = word
    rows["sep"] = ord(" ")
    return rows.tobytes().translate(None, b"\0")[:-1].decode("ascii")


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
    shape = _check_shape(shape)
    if _is_missing(rle):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not isinstance(rle, str):
        raise TypeError(f"an RLE must be a string, None or NaN, got {type(rle).__name__}")
    if not rle or rle.isspace():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = _parse_ints(rle)
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
    _check_order(order)
    shape = _check_shape(shape)
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
    _check_order(order)
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
    return _format_ints(bounds)


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
    _check_order(order)
    shape = _check_shape(shape)
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"dtype must be an integer type, got {dtype}")
    rles = list(rles)
    values = list(values)
    if len(rles) != len(values):
        raise ValueError(f"{len(rles)} RLE rows but {len(values)} values")
    labels = list(row_labels) if row_labels is not None else [f"row {i}" for i in range(len(rles))]
    n = shape[0] * shape[1]
    parsed = []  # (row, starts, lengths, value)
    for row, (rle, value) in enumerate(zip(rles, values)):
        try:
            starts, lengths = to_runs(rle, shape)
        except (ValueError, TypeError) as err:
            raise type(err)(f"{labels[row]}: {err}") from None
        if starts.size:
            parsed.append((row, starts, lengths, _row_value(value, dtype, labels[row])))
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
    _check_order(order)
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
        out[int(c)] = _format_ints(pairs)
    return out


# ----------------------------------------------------------------------------
# CSV files
# ----------------------------------------------------------------------------

def _find_column(columns, wanted, candidates, path, role: str, required: bool):
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no column {wanted!r} for the {role}; columns are {list(columns)}")
        return wanted
    lower = {str(c).lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(
            f"{path}: no {role} column (looked for {', '.join(candidates)}; case-insensitive); "
            f"columns are {list(columns)}; pass {role}_column=")
    return None


def _line(df: pd.DataFrame, index) -> str:
    """Where a row came from: 'train.csv, line 7' for files read by read_csv."""
    source = df.attrs.get("source")
    return f"{source}, line {index + 2}" if source else f"row {index}"


def _integer_column(df, column, what: str, positive: bool, required=None) -> pd.Series:
    """The column as int64; a value that is not an integer (or a missing one
    where ``required``, default everywhere) raises ValueError naming the line."""
    numbers = pd.to_numeric(df[column], errors="coerce")
    missing = df[column].isna()
    bad = (~missing & (numbers.isna() | (numbers != numbers.round())))
    if positive:
        bad |= numbers < 1
    bad |= missing & (True if required is None else required)
    if bad.any():
        i = bad.idxmax()
        value = df.at[i, column]
        if pd.isna(value):
            raise ValueError(f"{_line(df, i)}: {what} is missing")
        kind = "a positive integer" if positive else "an integer"
        raise ValueError(f"{_line(df, i)}: {what} {value!r} is not {kind}")
    return numbers.fillna(0).astype(np.int64)


def read_csv(path, *, id_column: str | None = None, rle_column: str | None = None,
             class_column: str | None | bool = None,
             classes: Sequence[str] | Mapping[str, int] | None = None,
             **read_csv_kwargs) -> pd.DataFrame:
    """Reads an RLE CSV (one row per mask) into a DataFrame with normalised columns.

    Recognised columns (case-insensitive; the ``*_column`` arguments override):
    the image id (``id``, ``ImageId``, ``image_id``, ...), the RLE
    (``rle``, ``annotation`` as in the seed's train.csv, ``EncodedPixels``, ...),
    optionally a class (``class``, ``ClassId``, ``category_id``, ``label``) and
    ``width``/``height``. Other columns are kept unchanged.

    Args:
        path: the CSV file.
        id_column, rle_column: names of those columns, if not recognised.
        class_column: name of the class column; None finds one if present;
            False ignores any (every row is then an instance).
        classes: for class columns holding names (e.g. ``'cat'``): a sequence
            whose index is the class id (such as ``voc.VOC_CLASSES``) or a
            mapping ``name -> id``.
        **read_csv_kwargs: passed to :func:`pandas.read_csv`.

    Returns:
        DataFrame with ``id`` (str), ``rle`` (str, ``''`` for empty masks) and,
        when present, ``class``, ``width``, ``height`` (int64; class 0 on rows
        with an empty RLE and no class). The index is the 0-based data row
        (file line = index + 2); ``df.attrs['source']`` is the path, so later
        errors can name the file and line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing id/RLE column, an empty id, or a class, width or
            height that is not an integer (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RLE CSV {str(path)!r} not found")
    # Everything as text, and only empty fields missing: ids such as 'NA' or
    # 'None' must stay ids.
    options = dict(dtype=str, keep_default_na=False, na_values=[""])
    options.update(read_csv_kwargs)
    df = pd.read_csv(path, **options)
    df.attrs["source"] = str(path)
    columns = df.columns
    names = {"id": _find_column(columns, id_column, ID_COLUMNS, path, "id", True),
             "rle": _find_column(columns, rle_column, RLE_COLUMNS, path, "rle", True)}
    if class_column is not False:
        found = _find_column(columns, class_column, CLASS_COLUMNS, path, "class", False)
        if found is not None:
            names["class"] = found
    for size in ("width", "height"):
        found = _find_column(columns, None, (size,), path, size, False)
        if found is not None:
            names[size] = found
    df = df.rename(columns={old: new for new, old in names.items() if old != new})
    other = [c for c in df.columns if c not in names]
    df = df[list(names) + other]
    missing_id = df["id"].isna()
    if missing_id.any():
        raise ValueError(f"{_line(df, missing_id.idxmax())}: empty image id")
    df["id"] = df["id"].astype(str)
    df["rle"] = df["rle"].fillna("").astype(str)
    if "class" in df:
        df["class"] = _class_ids(df, classes)
    for size in ("width", "height"):
        if size in df:
            df[size] = _integer_column(df, size, size, positive=True)
    return df


def _class_ids(df: pd.DataFrame, classes) -> pd.Series:
    raw = df["class"]
    has_runs = df["rle"] != ""
    if classes is not None:
        lookup = dict(classes) if isinstance(classes, Mapping) else {n: i for i, n in enumerate(classes)}
        names = raw.map(lookup)
        numeric = pd.to_numeric(raw, errors="coerce")
        raw = names.where(names.notna(), numeric)  # names first, then plain numbers
        unknown = raw.isna() & df["class"].notna()
        if unknown.any():
            i = unknown.idxmax()
            raise ValueError(f"{_line(df, i)}: class {df.at[i, 'class']!r} is not in classes")
        df = df.assign(_class=raw)
        return _integer_column(df, "_class", "class", positive=False, required=has_runs)
    return _integer_column(df, "class", "class", positive=False, required=has_runs)


def _image_shape(shape, image_id, rows: pd.DataFrame, df: pd.DataFrame):
    """(height, width) of one image from ``shape`` and/or the width/height columns."""
    stated = None
    if "width" in rows and "height" in rows:
        sizes = set(zip(rows["height"].tolist(), rows["width"].tolist()))
        if len(sizes) > 1:
            raise ValueError(f"{df.attrs.get('source', 'CSV')}: id {image_id!r} has rows with "
                             f"different sizes (height, width) {sorted(sizes)}")
        stated = sizes.pop()
    if shape is None:
        if stated is None:
            raise ValueError(f"{df.attrs.get('source', 'CSV')}: id {image_id!r}: no image size; "
                             f"pass shape= or add width and height columns")
        return stated
    if callable(shape):
        given = shape(image_id)
    elif isinstance(shape, Mapping):
        if image_id not in shape:
            raise ValueError(f"shape mapping has no entry for id {image_id!r}")
        given = shape[image_id]
    else:
        given = shape
    given = _check_shape(given)
    if stated is not None and stated != given:
        raise ValueError(f"{df.attrs.get('source', 'CSV')}: id {image_id!r} has height x width "
                         f"{stated[0]}x{stated[1]} in the file but shape {given} was given")
    return given


def iter_label_maps(data, order: str, shape=None, *, kind: str | None = None,
                    overlap: str = "error", dtype=np.uint8, ids: Sequence[str] | None = None,
                    **read_csv_kwargs) -> Iterator[tuple[str, np.ndarray]]:
    """Lazily decodes an RLE CSV into one label map per image.

    The file (or DataFrame) is read and grouped at once; each label map is
    decoded only when the iterator reaches it, so a CSV of tens of thousands of
    rows costs one mask's memory at a time.

    Args:
        data: a CSV path, or a DataFrame from :func:`read_csv`.
        order: ``'C'`` or ``'F'``, as in :func:`decode`.
        shape: ``(height, width)`` for every image, a mapping ``id -> shape``,
            or a callable ``id -> shape``; default: the ``width``/``height``
            columns (checked against ``shape`` when both are there).
        kind: ``'semantic'`` (values from the ``class`` column) or
            ``'instance'`` (the rows of an image numbered 1, 2, ... in file
            order); default: semantic when there is a class column.
        overlap: overlap policy of :func:`decode_label_map`.
        dtype: dtype of the label maps (np.uint16 for > 255 instances).
        ids: only these images, in this order (default: all, in order of first
            appearance).
        **read_csv_kwargs: passed to :func:`read_csv` when ``data`` is a path.

    Returns:
        An iterator of ``(image_id, label_map)``, label maps ``dtype [H, W]``.

    Raises:
        FileNotFoundError, ValueError: at once for a missing file, unknown ids
            or a bad argument; while iterating for a malformed row (naming the
            file, line and id).
    """
    _check_order(order)
    df = data if isinstance(data, pd.DataFrame) else read_csv(data, **read_csv_kwargs)
    for column in ("id", "rle"):
        if column not in df:
            raise ValueError(f"need columns 'id' and 'rle' (see read_csv), got {list(df.columns)}")
    if kind is None:
        kind = "semantic" if "class" in df else "instance"
    if kind not in ("semantic", "instance"):
        raise ValueError(f"kind must be 'semantic' or 'instance', got {kind!r}")
    if kind == "semantic" and "class" not in df:
        raise ValueError(f"kind='semantic' needs a class column, got {list(df.columns)}")
    if overlap not in OVERLAP_POLICIES:
        raise ValueError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
    # Group once with factorize + a stable sort: iterating a pandas groupby
    # would build a DataFrame per image.
    codes, uniques = pd.factorize(df["id"].astype(str), sort=False)
    by_image = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_image], np.arange(len(uniques) + 1))
    position = {image_id: g for g, image_id in enumerate(uniques)}
    if ids is None:
        wanted = range(len(uniques))
    else:
        missing = [i for i in ids if str(i) not in position]
        if missing:
            raise ValueError(f"{len(missing)} id(s) have no row in "
                             f"{df.attrs.get('source', 'the CSV')}, e.g. {missing[:3]}")
        wanted = [position[str(i)] for i in ids]
    return _label_maps(df, uniques, by_image, bounds, wanted, order, shape, kind, overlap, dtype)


def _label_maps(df, uniques, by_image, bounds, wanted, order, shape, kind, overlap, dtype):
    rles = df["rle"].to_numpy(object)
    for g in wanted:
        image_id = str(uniques[g])
        positions = by_image[bounds[g]:bounds[g + 1]]
        rows = df.iloc[positions]
        image_shape = _image_shape(shape, image_id, rows, df)
        if kind == "semantic":
            values = rows["class"].tolist()
        else:  # instances numbered among the rows that have runs
            nonempty = np.array([not _is_missing(r) and bool(str(r).strip()) for r in rles[positions]])
            values = np.where(nonempty, np.cumsum(nonempty), 0).tolist()
        labels = [f"{_line(df, i)} (id {image_id!r})" for i in rows.index]
        yield image_id, decode_label_map(rles[positions], values, image_shape, order,
                                         overlap=overlap, dtype=dtype, row_labels=labels)


def write_csv(path, label_maps: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
              order: str, *, ignore: Iterable[int] = (0, 255), sizes: bool = True) -> Path:
    """Writes label maps as a submission-style RLE CSV: one row per (image, value).

    Columns ``id, class, rle, width, height``. An image with nothing to encode
    gets one row with class 0 and an empty RLE, so every image appears.
    ``iter_label_maps(path, order)`` reads the file back (ignored values become 0).

    Args:
        path: the CSV to write (parent folders are created).
        label_maps: ``{image_id: label_map}`` or an iterable of
            ``(image_id, label_map)`` pairs (such as :func:`iter_label_maps`),
            label maps integer ``[H, W]``.
        order: ``'C'`` or ``'F'``.
        ignore: values not written (default: background 0 and void 255).
        sizes: write the ``width`` and ``height`` columns.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    _check_order(order)
    ignore = tuple(ignore)
    items = label_maps.items() if isinstance(label_maps, Mapping) else label_maps
    records = []
    for image_id, label_map in items:
        label_map = np.asarray(label_map)
        encoded = encode_label_map(label_map, order, ignore=ignore) or {0: ""}
        height, width = label_map.shape
        for value, rle in encoded.items():
            records.append((str(image_id), value, rle, width, height))
    df = pd.DataFrame.from_records(records, columns=["id", "class", "rle", "width", "height"])
    if not sizes:
        df = df.drop(columns=["width", "height"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


__all__ = ["ORDERS", "OVERLAP_POLICIES", "decode", "encode", "to_runs", "decode_label_map",
           "encode_label_map", "read_csv", "iter_label_maps", "write_csv"]
