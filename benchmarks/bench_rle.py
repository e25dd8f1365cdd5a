"""Side-by-side speed of segnet_lib.rle against the usual alternatives.

Contenders, all on the same masks in one run:

* ``kaggle``: the two functions most Kaggle notebooks copy (the decoder that
  loops over runs with slice assignment, and the ``np.where(pixels[1:] !=
  pixels[:-1])`` encoder with ``' '.join``), in the matching pixel order.
* ``coco``: pycocotools' C codec (column-major by design) on its own compressed
  counts, converted from the same masks beforehand. For encoding, the
  "C-contiguous mask" row includes the ``np.asfortranarray`` copy pycocotools
  needs, since masks read from images are C-contiguous.
* ``ours``: :func:`segnet_lib.rle.decode` / :func:`segnet_lib.rle.encode`.

Masks: 520x704 (a Sartorius-sized image) with a few hundred runs, and
1024x1024 with about 20,000 runs. Times are the minimum over interleaved
repeats (the CPU may be shared; the minimum is the least disturbed run).
Ratios > 1 mean ``ours`` is faster.

Usage: python benchmarks/bench_rle.py [--repeats N]
"""
import argparse
import time

import numpy as np
from pycocotools import mask as coco_mask

from segnet_lib import rle, rle_text


# --- the functions Kaggle notebooks copy (kept as they are written there) ---

def kaggle_decode(mask_rle, shape, order):
    s = mask_rle.split()
    starts, lengths = [np.asarray(x, dtype=int) for x in (s[0:][::2], s[1:][::2])]
    starts -= 1
    ends = starts + lengths
    img = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    for lo, hi in zip(starts, ends):
        img[lo:hi] = 1
    return img.reshape(shape, order=order)


def kaggle_encode(img, order):
    pixels = img.flatten(order=order)
    pixels = np.concatenate([[0], pixels, [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


# --- masks ---

def ellipses_mask(rng, shape, count):
    """A few cell-like ellipses: a few hundred runs on 520x704."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    mask = np.zeros(shape, bool)
    for _ in range(count):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        ry, rx = rng.uniform(8, 25, size=2)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask.astype(np.uint8)


def blobs_mask(rng, shape, sigma):
    """Thresholded smooth noise (Gaussian filter in Fourier space): many blobs."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    smooth = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2)),
                           s=shape)
    return (smooth > 0).astype(np.uint8)


def coco_counts(mask_f):
    """pycocotools' compressed RLE of a mask (done outside the timings)."""
    return coco_mask.encode(np.asfortranarray(mask_f))


# --- timing ---

def race(contenders, repeats):
    """Min seconds per call of each contender, repeats interleaved round-robin."""
    best = {name: float("inf") for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def parser_table(text, repeats):
    """The string -> integers step alone, the dominant cost of decoding."""
    import warnings

    def fromstring():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.fromstring(text, dtype=np.int64, sep=" ")

    contenders = {
        "ours (bytes, SWAR)": lambda: rle_text.parse_ints(text),
        "np.array(s.split(), int64)": lambda: np.array(text.split(), dtype=np.int64),
        "np.fromiter(map(int, s.split()))": lambda: np.fromiter(map(int, text.split()), np.int64),
        "np.fromstring(sep=' ') [deprecated]": fromstring,
    }
    reference = np.array(text.split(), dtype=np.int64)
    for name, fn in contenders.items():
        assert np.array_equal(fn(), reference), name
    return race(contenders, repeats)


def main(repeats):
    rng = np.random.default_rng(0)
    cases = {
        "520x704": ellipses_mask(rng, (520, 704), 10),
        "1024x1024": blobs_mask(rng, (1024, 1024), 6.0),
    }
    rows = []
    for name, mask_c in cases.items():
        shape = mask_c.shape
        mask_f = np.asfortranarray(mask_c)
        counts = coco_counts(mask_c)
        for order in ("F", "C"):
            text = rle.encode(mask_c, order)
            # Everyone must agree before anyone is timed.
            assert text == kaggle_encode(mask_c, order)
            assert np.array_equal(rle.decode(text, shape, order), mask_c)
            assert np.array_equal(kaggle_decode(text, shape, order), mask_c)
            nruns = text.count(" ") // 2 + 1
            dec = {"ours": lambda: rle.decode(text, shape, order),
                   "kaggle": lambda: kaggle_decode(text, shape, order)}
            enc = {"ours": lambda: rle.encode(mask_c, order),
                   "kaggle": lambda: kaggle_encode(mask_c, order)}
            if order == "F":
                assert np.array_equal(coco_mask.decode(counts), mask_c)
                dec["coco"] = lambda: coco_mask.decode(counts)
                enc["coco"] = lambda: coco_mask.encode(np.asfortranarray(mask_c))
            rows.append((name, nruns, order, "decode", race(dec, repeats)))
            rows.append((name, nruns, order, "encode (C-contiguous mask)", race(enc, repeats)))
            if order == "F":
                enc_f = {"ours": lambda: rle.encode(mask_f, order),
                         "kaggle": lambda: kaggle_encode(mask_f, order),
                         "coco": lambda: coco_mask.encode(mask_f)}
                rows.append((name, nruns, order, "encode (F-contiguous mask)", race(enc_f, repeats)))

    print(f"segnet_lib.rle benchmark, min of {repeats} interleaved repeats, times in ms")
    print("ratio = other / ours (> 1: ours is faster)\n")
    header = (f"{'mask':<10} {'runs':>6} {'order':>5}  {'operation':<27} {'ours':>7} {'kaggle':>7} "
              f"{'coco':>7}  {'kaggle/ours':>11} {'coco/ours':>9}")
    print(header)
    print("-" * len(header))
    for name, nruns, order, op, t in rows:
        coco = f"{t['coco'] * 1e3:7.3f}" if "coco" in t else f"{'-':>7}"
        coco_ratio = f"{t['coco'] / t['ours']:9.2f}" if "coco" in t else f"{'-':>9}"
        print(f"{name:<10} {nruns:>6} {order:>5}  {op:<27} {t['ours'] * 1e3:7.3f} "
              f"{t['kaggle'] * 1e3:7.3f} {coco}  {t['kaggle'] / t['ours']:11.2f} {coco_ratio}")

    big = rle.encode(cases["1024x1024"], "F")
    print(f"\nParsing the 1024x1024 string alone ({len(big):,} characters):")
    for name, seconds in parser_table(big, repeats).items():
        print(f"  {name:<38} {seconds * 1e3:7.3f} ms")

    print("\nGoals (1024x1024): decode >= 2x the Kaggle decoder; encode no slower than the Kaggle "
          "encoder; both within 2x of pycocotools (coco/ours >= 0.5).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    main(parser.parse_args().repeats)
