"""Integers to and from text, fast: the digit parser and formatter behind the RLE codec.

Turning the text of an RLE string into integers is the dominant cost of
decoding a large mask, and the reverse the dominant cost of encoding one. So
:func:`parse_ints` reads the ASCII bytes itself, eight digits at a time in one
64-bit word (SWAR: "SIMD within a register"), instead of ``str.split`` plus
``int``, and :func:`format_ints` writes the digits with table lookups instead
of ``' '.join(map(str, ...))``. Both are vectorised NumPy: no Python loop over
the numbers. ``benchmarks/bench_rle.py`` measures them against the usual code.
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ["parse_ints", "format_ints"]

_U64 = np.uint64
_ALL_ONES = _U64(0xFFFFFFFFFFFFFFFF)
_SPACE_MINUS_ZERO = np.uint8((ord(" ") - ord("0")) & 0xFF)
_MAX_FAST_DIGITS = 16  # two 64-bit words; 10**16 pixels is more than any image
_TOKEN = re.compile(r"-?[0-9]+\Z")  # ASCII digits only: \d would accept other scripts


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


def parse_ints(text: str) -> np.ndarray:
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


def format_ints(values: np.ndarray) -> str:
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
