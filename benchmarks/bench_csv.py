"""How fast is a competition-sized RLE CSV turned into label maps? Rows per second, side by side.

The file: the generated Sartorius stand-in (segnet_lib.cells) at the real size
(520x704) with as many images as the real training set (606), written once
without its PNGs into a temporary folder. Every contender reads the file from
disk and produces one uint8 label map per image, by cell type (0 background,
then shsy5y, astro, cort), the later row winning where cells overlap:

* ``ours``: :func:`segnet_lib.cells.iter_semantic_maps`, i.e.
  ``rle_csv.read_csv`` + ``RLETable`` (the rows grouped once with
  ``pd.factorize``) + ``rle.decode_label_map`` per image: what
  ``datasets.CSVSegmentation`` does for every image it reads.
* ``groupby + rle.decode``: ``pd.read_csv``, ``df.groupby('id')``, and per
  row ``segnet_lib.rle.decode`` painted into the map: the usual structure,
  with this library's decoder.
* ``groupby + Kaggle decoder``: the same with the decoder public Sartorius
  solutions copy (a Python loop over runs), the plain approach.

All three must give identical maps before anything is timed. Times are the
minimum over interleaved repeats (the CPU may be shared); rows/s divides the
file's rows by that time. Ratios > 1 mean ``ours`` is faster.

Usage: python benchmarks/bench_csv.py [--repeats N] [--images N]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench_rle import kaggle_decode
from segnet_lib import cells, rle

CLASS_OF = {name: i for i, name in enumerate(cells.CLASS_NAMES)}


def ours(csv):
    return dict(cells.iter_semantic_maps(csv))


def grouped(csv, decode):
    """``pd.read_csv`` + ``groupby('id')`` + one decode per row, painted in file order."""
    df = pd.read_csv(csv)
    maps = {}
    for image_id, rows in df.groupby("id", sort=False):
        h, w = int(rows["height"].iloc[0]), int(rows["width"].iloc[0])
        label = np.zeros((h, w), np.uint8)
        for annotation, cell_type in zip(rows["annotation"], rows["cell_type"]):
            label[decode(annotation, (h, w)) == 1] = CLASS_OF[cell_type]
        maps[image_id] = label
    return maps


CONTENDERS = {
    "ours (RLETable + decode_label_map)": ours,
    "groupby + rle.decode": lambda csv: grouped(csv, lambda s, shape: rle.decode(s, shape, "C")),
    "groupby + Kaggle decoder": lambda csv: grouped(csv, lambda s, shape: kaggle_decode(s, shape, "C")),
}


def main(repeats, num_images):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = cells.generate(Path(tmp), seed=0, num_images=num_images, scale=1.0, images=False)
        csv = root / cells.CSV_NAME
        rows = sum(1 for _ in open(csv)) - 1
        print(f"generated {csv.name}: {num_images} images of 520x704, {rows:,} rows, "
              f"{csv.stat().st_size / 2**20:.1f} MiB, in {time.perf_counter() - start:.0f} s")
        reference = None
        for name, fn in CONTENDERS.items():  # everyone must agree before anyone is timed
            maps = fn(csv)
            if reference is None:
                reference = maps
            assert list(maps) == list(reference), name
            assert all(np.array_equal(maps[k], reference[k]) for k in reference), name
        cell_pixels = sum(int(np.count_nonzero(m)) for m in reference.values())
        print(f"all contenders give the same {len(reference)} label maps "
              f"({cell_pixels / (len(reference) * 520 * 704):.1%} of pixels are cells)\n")
        best = {name: float("inf") for name in CONTENDERS}
        for _ in range(repeats):
            for name, fn in CONTENDERS.items():
                start = time.perf_counter()
                fn(csv)
                best[name] = min(best[name], time.perf_counter() - start)
    first = next(iter(best.values()))
    print(f"CSV -> label maps, min of {repeats} interleaved repeats")
    print(f"{'contender':<36} {'seconds':>8} {'rows/s':>10} {'images/s':>9} {'time / ours':>12}")
    for name, seconds in best.items():
        print(f"{name:<36} {seconds:8.2f} {rows / seconds:10,.0f} {num_images / seconds:9.1f} "
              f"{seconds / first:12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=606, help="images in the CSV (real: 606)")
    args = parser.parse_args()
    main(args.repeats, args.images)
