"""Segment images with a trained model; write coloured masks and an RLE CSV.

For each IMAGE, --out receives <name>.png, the predicted classes in the VOC
colours (segnet_lib.voc.colorize), and all predictions go to one Kaggle-style
CSV, --out/predictions.csv (id, class, rle, width, height; one row per class
present, background and void not written; the pixel order is --rle-order).
Each image's line names the classes found, as the training data named them
(e.g. the cell types of a Sartorius-layout CSV).

With --submission, --out/submission.csv is also written in the format of the
Sartorius competition's submission: id (the image's file name without its
extension), predicted (one row-major RLE per instance; an image without any
gets one empty row). The instances are the connected components of each
predicted class (8-connected), at least --min-area pixels: they never
overlap, as the competition requires, but touching cells of one class merge
into one instance and a cell hidden under another is lost, because a
semantic model predicts one class per pixel.

--checkpoint takes a run folder written by `train` (its exported model is used,
and written first if missing), an exported model folder (frozen graph or
SavedModel, with export.json), a frozen_graph.pb, or the name of a reference run
shipped in reference/ (sample-segnet: the book's small SegNet; see
`reference --list`). The training graph is never rebuilt: the exported
inference graph is loaded (or, for a reference run, rebuilt from its config).

Example:
  python -m segnet_lib predict photo1.jpg photo2.jpg --checkpoint runs/voc --out preds
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from segnet_lib import bayes, cells, export, rle, setup, voc
from segnet_lib.cli import Refused, at_least, model_path
from segnet_lib.rle_csv import write_csv

HELP = "segment images with a trained model: coloured PNG masks + an RLE CSV"

CSV_NAME = "predictions.csv"
SUBMISSION_NAME = "submission.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files (JPEG, PNG, ...; converted to RGB)")
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="run folder, export folder, frozen_graph.pb, or the name of a "
                             "shipped reference run (e.g. sample-segnet; see `reference --list`)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for the PNG masks and predictions.csv (created)")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="for a run folder: the best-validation or the newest checkpoint")
    parser.add_argument("--rle-order", choices=rle.ORDERS, default="C", help=(
        "pixel order of the CSV's RLE strings: C = row-major, F = column-major"))
    parser.add_argument("--mc-samples", type=at_least(int, 1), default=None, metavar="N", help=(
        "Bayesian SegNet: predict the mean of N Monte Carlo dropout passes"))
    parser.add_argument("--submission", action="store_true", help=(
        f"also write {SUBMISSION_NAME}: one row-major RLE row per instance (connected "
        "components of each class), the Sartorius competition's format"))
    parser.add_argument("--min-area", type=at_least(int, 1), default=1, metavar="PIXELS", help=(
        "with --submission: smallest instance kept"))


def _check(args) -> list:
    images = [Path(p).expanduser() for p in args.images]
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise Refused(f"image(s) not found: {', '.join(missing)}")
    stems = [p.stem for p in images]
    clash = sorted({s for s in stems if stems.count(s) > 1})
    if clash:
        raise Refused(f"several images are named {clash[0]!r}; their masks would overwrite each other")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise Refused(f"--out {out} exists and is not a folder")
    return images


def run(args: argparse.Namespace) -> int:
    """Predicts every image; returns 0 (refusals exit with 2, see the CLI's exit codes)."""
    images = _check(args)
    path = model_path(args.checkpoint)
    setup(verbose=False)
    try:
        predictor = export.load_predictor(path, checkpoint=args.which)
    except FileNotFoundError as err:
        raise Refused(f"--checkpoint {args.checkpoint}: {err}") from None
    with predictor:
        if args.mc_samples and not predictor.has_mc_dropout:
            raise Refused(f"--mc-samples: the {predictor.variant!r} model in {path} has no "
                          "dropout to sample (train the 'bayesian' variant)")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        label_maps, submission = {}, []
        for image_path in images:
            image = voc.read_image(image_path)
            if args.mc_samples:
                labels = bayes.mc_dropout_predict(predictor.sample, image, args.mc_samples).labels
            else:
                labels = predictor.predict(image).argmax(-1)
            labels = labels.astype(np.uint8)
            Image.fromarray(voc.colorize(labels)).save(out / f"{image_path.stem}.png")
            label_maps[image_path.stem] = labels
            present = [predictor.class_names[c] for c in np.unique(labels)]
            line = f"{image_path.name}: {', '.join(present)}"
            if args.submission:
                rows = cells.submission_rows(image_path.stem, labels, args.min_area,
                                             predictor.class_names)
                submission += rows
                line += f"; {sum(1 for r in rows if r['predicted'])} instance(s)"
            print(line)
        csv = write_csv(out / CSV_NAME, label_maps, order=args.rle_order)
        if args.submission:
            written = cells.write_submission(out / SUBMISSION_NAME, submission)
    print(f"Wrote {len(images)} mask(s) and {csv}" + (f" and {written}" if args.submission else ""))
    return 0
