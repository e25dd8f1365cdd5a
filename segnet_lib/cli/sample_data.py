"""Generate the embedded sample dataset (VOC layout + RLE CSV) into a folder.

Without --out it fills the cache that the notebooks and tests use
($SEGNET_CACHE_DIR, default ~/.cache/segnet_lib) and prints its path.
"""
from __future__ import annotations

import argparse

from segnet_lib import sample_data
from segnet_lib.cli import Refused, at_least

HELP = "generate the small sample dataset (VOC layout + RLE CSV)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder to write (default: the shared cache, see above)")
    parser.add_argument("--seed", type=at_least(int, 0), default=0,
                        help="dataset seed; the same seed gives the same files")
    parser.add_argument("--num-train", type=at_least(int, 1), default=None,
                        help="training images (default 300; only with --out)")
    parser.add_argument("--num-val", type=at_least(int, 1), default=None,
                        help="validation images (default 100; only with --out)")


def run(args: argparse.Namespace) -> int:
    """Writes the dataset and prints where; returns 0."""
    if args.out is None:
        if args.num_train is not None or args.num_val is not None:
            raise Refused("--num-train/--num-val need --out (the cache has the default sizes)")
        root = sample_data.sample_root(seed=args.seed)
    else:
        sizes = {k: v for k, v in (("num_train", args.num_train), ("num_val", args.num_val))
                 if v is not None}
        root = sample_data.generate(args.out, seed=args.seed, progress=True, **sizes)
    print(root)
    return 0
