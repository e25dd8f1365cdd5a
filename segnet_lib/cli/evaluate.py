"""Score a trained checkpoint on one split of a dataset.

Runs the model over every image of the split (or the first --limit), sums the
confusion matrix, and prints the SegNet paper's measures: global and class
accuracy, mean and frequency-weighted IoU, and the boundary F1 score, then one
row per class. The same numbers go to --out as metrics.json (summary, per-class
values and the confusion matrix), metrics.csv (per class) and per_image.csv,
each written atomically. With --mc-samples N the model must be a Bayesian
SegNet; its prediction is the mean of N Monte Carlo dropout passes.

--data takes what `train --data` takes: 'sample', 'cells', a VOC-layout folder
or an RLE CSV (read as `train` reads it). A CSV's split 'val' is the share of
its images that training held out: when --checkpoint is a run folder trained on
the same CSV, its pixel order, image folder, validation CSV, held-out
fraction, class column, overlap policy and seed are read from the run's
config.json (any of them may be given again). The classes are named from the
dataset (a CSV's names from its data, e.g. the cell types), and a model whose
class names differ from the dataset's is refused.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from segnet_lib import bayes, datasets, export, metrics, reference
from segnet_lib.checkpoints import CONFIG_FILE
from segnet_lib.cli import Refused, add_config_options, at_least, model_path
from segnet_lib.config import TrainConfig, read_config
from segnet_lib.files import atomic_write_text

HELP = "score a checkpoint on a dataset split (accuracy, IoU, BF) and write CSV + JSON"

# TrainConfig fields that say which data a split is (shared with `train`).
_DATA_FIELDS = ("rle_order", "image_dir", "val_csv", "val_fraction", "class_column", "overlap")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="run folder written by `train`, an exported model folder / .pb, or "
                             "the name of a shipped reference run (see `reference --list`)")
    parser.add_argument("--which", choices=("best", "latest"), default="best",
                        help="for a run folder: the best-validation or the newest checkpoint")
    parser.add_argument("--data", metavar="{sample,cells,DIR,CSV}", default=None,
                        help="'sample', 'cells', a VOC-layout folder (or one above it) or an "
                             "RLE CSV; unset: $SEGNET_VOC_ROOT if set, else the sample data")
    parser.add_argument("--split", default="val",
                        help="split to score: a list in ImageSets/Segmentation; for a CSV, "
                             "'val' (the held-out images) or 'train'")
    add_config_options(parser, TrainConfig, _DATA_FIELDS)
    parser.add_argument("--limit", type=at_least(int, 1), default=None,
                        help="score only the first N images")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="where to write the results; unset: <run folder>/eval-<split>")
    parser.add_argument("--tolerance", type=at_least(float, 0), default=None,
                        help="boundary F1 tolerance in pixels; unset: 0.75%% of each image's diagonal")
    parser.add_argument("--no-boundary", action="store_true",
                        help="skip the boundary F1 score (faster on large images)")
    parser.add_argument("--mc-samples", type=at_least(int, 1), default=None,
                        help="Bayesian SegNet: average this many MC dropout passes")
    parser.add_argument("--decimals", type=at_least(int, 1), default=3, help="decimals in the printed tables")


def _json_ready(value):
    """NaN -> None (JSON has no NaN) and NumPy values -> Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_ready(value.tolist())
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def write_results(evaluator, out_dir, class_names, meta=None) -> dict:
    """Writes metrics.json, metrics.csv and per_image.csv for a filled Evaluator, atomically.

    Args:
        evaluator: a :class:`segnet_lib.metrics.Evaluator` after the split.
        out_dir: folder to write (created).
        class_names: names indexed by class id.
        meta: extra JSON-ready facts to record (checkpoint, data, split...).

    Returns:
        ``{'json': path, 'csv': path, 'per_image': path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = evaluator.scores()
    per_class = metrics.scores_table(scores, class_names, decimals=None)
    summary = metrics.summary_table(scores, decimals=None)["value"].to_dict()
    paths = {"json": out_dir / "metrics.json", "csv": out_dir / "metrics.csv",
             "per_image": out_dir / "per_image.csv"}
    report = dict(meta or {})
    report.update({
        "images": len(evaluator),
        "labelled_pixels": int(scores["num_pixels"]),
        "summary": summary,
        "per_class": per_class.reset_index().to_dict(orient="records"),
        "confusion": evaluator.confusion,
        "class_names": list(class_names),
    })
    atomic_write_text(paths["json"], json.dumps(_json_ready(report), indent=2) + "\n")
    atomic_write_text(paths["csv"], per_class.to_csv())
    atomic_write_text(paths["per_image"], evaluator.per_image().to_csv(index=False))
    return paths


def open_data(args: argparse.Namespace, run_config=None):
    """The dataset to score: ``--data``/``--split`` through :func:`segnet_lib.datasets.open_split`.

    Options not given come from ``run_config`` (the run's saved config) when
    ``--data`` names the same data, so a CSV's held-out split is the one the
    run trained without. A run trained on some classes only
    (``TrainConfig.classes``) is scored on those, renumbered as it learnt them.
    """
    classes = run_config.classes if run_config is not None else None
    if args.data is None:
        return datasets.keep_classes(datasets.book_dataset(args.split), classes)
    names = (*_DATA_FIELDS, "seed")
    defaults = TrainConfig()
    options = {k: getattr(defaults, k) for k in names}
    if run_config is not None and _resolved(run_config.data) == _resolved(args.data):
        options.update({k: getattr(run_config, k) for k in names})
    options.update({k: getattr(args, k) for k in _DATA_FIELDS if getattr(args, k) is not None})
    return datasets.open_split(_resolved(args.data), args.split, classes=classes, **options)


def _name_mismatch(model_names, data_names) -> str:
    """The first class the two lists name differently ('' if they agree or either is only numbered)."""
    numbered = datasets.numbered_class_names(len(data_names))
    if tuple(model_names) == tuple(data_names) or numbered in (tuple(model_names), tuple(data_names)):
        return ""
    c = next(i for i, (a, b) in enumerate(zip(model_names, data_names)) if a != b)
    return f"class {c} is {model_names[c]!r} for the model, {data_names[c]!r} in the data"


def _resolved(data: str) -> str:
    return data if data in datasets.NAMED_DATA else str(Path(data).expanduser().resolve())


def run(args: argparse.Namespace) -> int:
    """Evaluates, prints the tables and writes the files; returns 0."""
    checkpoint = model_path(args.checkpoint)
    is_run = (checkpoint / CONFIG_FILE).is_file()
    try:
        dataset = open_data(args, read_config(checkpoint) if is_run else None)
    except (FileNotFoundError, ValueError) as err:
        raise Refused(f"--data {args.data}, --split {args.split}: {err}") from None

    try:
        predictor = export.load_predictor(checkpoint, **({"checkpoint": args.which} if is_run else {}))
    except FileNotFoundError as err:
        raise Refused(f"--checkpoint {checkpoint}: {err}") from None
    with predictor:
        if predictor.num_classes != dataset.num_classes:
            raise Refused(f"the model in {checkpoint} has {predictor.num_classes} classes, the "
                          f"dataset {dataset.num_classes}")
        mismatch = _name_mismatch(predictor.class_names, dataset.class_names)
        if mismatch:
            raise Refused(f"the model in {checkpoint} and the dataset name their classes "
                          f"differently ({mismatch}): its scores per class would be "
                          "another class's")
        predict = predictor.predict
        if args.mc_samples:
            if not predictor.has_mc_dropout:
                raise Refused(f"--mc-samples: the {predictor.variant!r} model in {checkpoint} has "
                              "no dropout to sample (train the 'bayesian' variant)")

            def predict(image):
                return bayes.mc_dropout_predict(predictor.sample, image, args.mc_samples).mean
        evaluator = metrics.evaluate_dataset(
            predict, dataset, num_classes=dataset.num_classes, limit=args.limit,
            boundary=not args.no_boundary, tolerance=args.tolerance, progress=True)
    scores = evaluator.scores()

    run_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    if args.out:
        out_dir = Path(args.out)
    elif args.checkpoint in reference.REFERENCE_RUNS:  # never write into the shipped folder
        out_dir = Path("runs") / "eval" / f"{args.checkpoint}-{args.split}"
    else:
        out_dir = run_dir / f"eval-{args.split}"
    meta = {"checkpoint": str(checkpoint), "model": repr(predictor),
            "data": str(getattr(dataset, "root", getattr(dataset, "csv_path", args.data))),
            "split": args.split, "mc_samples": args.mc_samples,
            "boundary_tolerance": args.tolerance}
    paths = write_results(evaluator, out_dir, dataset.class_names, meta)

    with pd.option_context("display.width", 120, "display.max_rows", 100):
        print(f"{len(evaluator)} images of {args.split!r}, "
              f"{scores['num_pixels']} labelled pixels\n")
        print(metrics.summary_table(scores, args.decimals).to_string(), end="\n\n")
        table = metrics.scores_table(scores, dataset.class_names, args.decimals)
        shown = table[(table["gt_pixels"] > 0) | (table["predicted_pixels"] > 0)]
        print(shown.to_string())
        if len(shown) < len(table):
            print(f"({len(table) - len(shown)} classes with neither ground truth nor "
                  "predictions not shown; the CSV has every class)")
    print(f"\nwrote {paths['json']}, {paths['csv'].name} and {paths['per_image'].name}")
    return 0
