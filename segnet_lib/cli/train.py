"""Train SegNet, or resume a run: rerunning with the same --out continues it.

Every setting starts from a recipe and can be overridden one by one:

  sample-cpu  a narrow SegNet (width 0.25) on 64x64 crops of the sample data,
              Adam 1e-3, 600 steps: a few minutes on a laptop CPU (the book's
              notebooks use exactly this run).
  voc-gpu     the paper's recipe for PASCAL VOC 2012 on one GPU: full SegNet,
              320x320 crops, batch 8, SGD momentum 0.9 at 1e-3 (with --vgg16
              weights), weight decay 5e-4, median-frequency class weights,
              20000 steps.

The default recipe is sample-cpu for --data sample and voc-gpu otherwise.

The run folder (--out) receives config.json, history.csv, checkpoints
(ckpt-NNNNNNNN/, the last --keep-last plus the best by validation mean IoU),
TensorBoard summaries (train/; `tensorboard --logdir runs`) and, at the end,
export/frozen_graph.pb for `predict`. If --out already holds a run, the saved
settings are used and only options given again may change (--steps may grow;
others that change the result are refused). Ctrl-C saves a checkpoint first.

Examples:
  python -m segnet_lib train --data sample --out runs/sample
  python -m segnet_lib train --data ~/data/VOC2012 --vgg16 vgg16_notop.h5 --out runs/voc
  python -m segnet_lib train --data train.csv --rle-order F --out runs/kaggle --steps 5000
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Shared argparse types (one definition for every command).
from segnet_lib.cli import at_least, image_size

HELP = "train SegNet (resumes when --out holds a run); see --help for every option"

RECIPES = ("sample-cpu", "voc-gpu")


_POSITIVE_INT = at_least(int, 1)
# Strictly positive floats are checked by TrainConfig (a 0 learning rate is refused there).
_NON_NEGATIVE_FLOAT = at_least(float, 0)



# TrainConfig field -> (flags, argparse keywords). Defaults are None: "from the
# recipe, or from the saved run when resuming".
_OPTIONS = {
    "data": (("--data",), dict(metavar="{sample,DIR,CSV}", help=(
        "'sample' (the generated sample data), a VOC-layout folder (JPEGImages, "
        "SegmentationClass, ImageSets/Segmentation), or a Kaggle-style RLE CSV"))),
    "variant": (("--variant",), dict(choices=("segnet", "segnet_basic", "bayesian"), help=(
        "segnet: VGG16 encoder + mirrored decoder; segnet_basic: 4+4 layers of 64 "
        "features; bayesian: segnet with dropout for Monte Carlo uncertainty"))),
    "steps": (("--steps",), dict(type=_POSITIVE_INT, metavar="N",
                                 help="training steps in total (a resumed run stops at the same N)")),
    "train_split": (("--train-split",), dict(metavar="NAME", help="VOC split list to train on")),
    "val_split": (("--val-split",), dict(metavar="NAME", help="VOC split list to validate on")),
    "image_dir": (("--image-dir",), dict(metavar="DIR", help=(
        "images of a CSV (default: JPEGImages next to the CSV, else its folder)"))),
    "rle_order": (("--rle-order",), dict(choices=("C", "F"), help=(
        "pixel order of a CSV's RLE strings: C = row-major (e.g. Sartorius), "
        "F = column-major (e.g. Carvana, Airbus); required with a CSV"))),
    "val_csv": (("--val-csv",), dict(metavar="CSV", help=(
        "validation masks for a CSV run (default: hold out --val-fraction of its images)"))),
    "val_fraction": (("--val-fraction",), dict(type=_NON_NEGATIVE_FLOAT, metavar="F",
                                               help="share of a CSV's images held out for validation")),
    "width_multiplier": (("--width-multiplier",), dict(type=_NON_NEGATIVE_FLOAT, metavar="W", help=(
        "scale every layer's features (0.25: 1/16 of the compute, trains on a CPU)"))),
    "dropout_rate": (("--dropout-rate",), dict(type=float, metavar="P",
                                               help="dropout probability of the bayesian variant")),
    "vgg16_weights": (("--vgg16",), dict(metavar="FILE", help=(
        "VGG16 ImageNet weights (.h5 or .npz) to initialise the encoder, as the paper "
        "did (segnet and bayesian variants, width 1)"))),
    "crop_size": (("--crop-size",), dict(type=image_size, metavar="HxW", help="training crop size")),
    "batch_size": (("--batch-size",), dict(type=_POSITIVE_INT, metavar="B", help="images per step")),
    "min_scale": (("--min-scale",), dict(type=_NON_NEGATIVE_FLOAT, metavar="S",
                                         help="smallest random rescaling before cropping")),
    "max_scale": (("--max-scale",), dict(type=_NON_NEGATIVE_FLOAT, metavar="S",
                                         help="largest random rescaling before cropping")),
    "flip": (("--flip",), dict(action=argparse.BooleanOptionalAction,
                               help="random horizontal flips")),
    "resize_to": (("--resize-to",), dict(type=image_size, metavar="HxW",
                                         help="resize every image to this size first (default: keep)")),
    "cache_images": (("--cache-images",), dict(action=argparse.BooleanOptionalAction, help=(
        "keep decoded images in memory after the first epoch (small datasets)"))),
    "optimizer": (("--optimizer",), dict(choices=("sgd", "adam"),
                                         help="sgd: momentum SGD as in the paper; adam")),
    "learning_rate": (("--lr",), dict(type=_NON_NEGATIVE_FLOAT, metavar="LR", help="learning rate")),
    "lr_schedule": (("--lr-schedule",), dict(choices=("constant", "poly"), help=(
        "constant (the paper) or poly: lr * (1 - step/steps) ** power"))),
    "lr_power": (("--lr-power",), dict(type=_NON_NEGATIVE_FLOAT, metavar="P", help="poly exponent")),
    "momentum": (("--momentum",), dict(type=float, metavar="M", help="SGD momentum")),
    "weight_decay": (("--weight-decay",), dict(type=float, metavar="WD",
                                               help="L2 factor on convolution kernels")),
    "class_weighting": (("--class-weighting",), dict(choices=("median_frequency", "none"), help=(
        "median_frequency: weigh the loss of rare classes up (the paper); none"))),
    "log_every": (("--log-every",), dict(type=_POSITIVE_INT, metavar="N", help="steps per history row")),
    "val_every": (("--val-every",), dict(type=_POSITIVE_INT, metavar="N", help=(
        "steps between validations (each followed by a checkpoint)"))),
    "val_images": (("--val-images",), dict(type=_POSITIVE_INT, metavar="N",
                                           help="validate on the first N images only (default: all)")),
    "checkpoint_every": (("--checkpoint-every",), dict(type=_POSITIVE_INT, metavar="N",
                                                       help="steps between extra checkpoints")),
    "keep_last": (("--keep-last",), dict(type=_POSITIVE_INT, metavar="K",
                                         help="checkpoints kept, besides the best one")),
    "summary_every": (("--summary-every",), dict(type=_POSITIVE_INT, metavar="N",
                                                 help="steps between TensorBoard scalars")),
    "seed": (("--seed",), dict(type=at_least(int, 0),
                               help="seed of the weights, the data order and the augmentation")),
    "deterministic": (("--deterministic",), dict(action=argparse.BooleanOptionalAction, help=(
        "same seed + data + machine -> same loss curve (on a GPU: TF's deterministic "
        "kernels, somewhat slower)"))),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run folder; rerunning with the same --out resumes the run")
    parser.add_argument("--recipe", choices=RECIPES, default=None, help=(
        "starting settings (see above); default: sample-cpu for --data sample, else voc-gpu"))
    for field, (flags, kwargs) in _OPTIONS.items():
        parser.add_argument(*flags, dest=field, default=None, **kwargs)
    parser.add_argument("--export-format", choices=("frozen", "saved_model", "none"), default="frozen",
                        help="inference model written to <out>/export when training ends")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show the progress bar")


def build_config(args: argparse.Namespace):
    """The :class:`segnet_lib.train.TrainConfig` the arguments ask for.

    Starts from the run saved in ``--out`` if there is one, else from the
    recipe, and applies every option given.

    Raises:
        ValueError: a bad value, missing data, or a change a resumed run cannot take.
    """
    from segnet_lib import train

    given = {f: getattr(args, f) for f in _OPTIONS if getattr(args, f) is not None}
    for key in ("data", "image_dir", "val_csv", "vgg16_weights"):
        # Absolute, so the saved config still finds them from another folder.
        if key in given and not (key == "data" and given[key] == "sample"):
            given[key] = str(Path(given[key]).expanduser().resolve())
    out = Path(args.out)
    if (out / train.CONFIG_FILE).is_file():
        base = train.read_config(out)
        if args.recipe is not None:
            recipe = _recipe(args.recipe, given.get("variant", base.variant))
            given = {**{k: v for k, v in recipe.to_dict().items()
                        if k not in train.RESUMABLE_FIELDS}, **given}
    else:
        data = given.get("data", "sample")
        name = args.recipe or ("sample-cpu" if data == "sample" else "voc-gpu")
        base = _recipe(name, given.get("variant", "segnet"))
    config = base.replace(**given)
    _check_paths(config)
    train.check_run_dir(config, out)
    return config


def _recipe(name: str, variant: str):
    from segnet_lib import train

    return train.sample_recipe(variant) if name == "sample-cpu" else train.voc_gpu_recipe(variant)


def _check_paths(config) -> None:
    """Files named by the config exist (before any graph is built)."""
    data = config.data
    if data != "sample":
        path = Path(data).expanduser()
        if not path.exists():
            raise ValueError(f"--data {data}: no such folder or CSV (or use 'sample')")
        if path.is_file() and config.rle_order is None:
            raise ValueError(f"--data {data} is a CSV: give --rle-order C or F (the pixel order "
                             "of its RLE strings)")
        if path.is_dir():
            from segnet_lib import voc

            try:
                voc.find_voc_root(path)
            except FileNotFoundError as err:
                raise ValueError(f"--data {data}: {err}") from None
    for flag, value in (("--vgg16", config.vgg16_weights), ("--val-csv", config.val_csv),
                        ("--image-dir", config.image_dir)):
        if value is not None and not Path(value).expanduser().exists():
            raise ValueError(f"{flag} {value}: not found")


def run(args: argparse.Namespace) -> int:
    """Checks the arguments, then trains; returns 0, 1 (failed) or 130 (interrupted)."""
    parser = args._parser
    try:
        config = build_config(args)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))

    import segnet_lib
    from segnet_lib import train

    segnet_lib.setup(seed=config.seed, verbose=False)
    try:
        history = train.train(config, args.out, progress=args.progress,
                              export=args.export_format == "frozen")
        if args.export_format == "saved_model":
            target = Path(args.out) / "saved_model"
            if not target.exists():
                train.export_model(args.out, out=target, format="saved_model")
            print(f"SavedModel: {target}")
    except KeyboardInterrupt:
        return 130
    except (train.TrainingDiverged, RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    last = history.dropna(subset=["val_mean_iou"]).tail(1)
    summary = f"Done: {args.out} at step {int(history['step'].iloc[-1]) if len(history) else 0}"
    if len(last):
        summary += f", validation mean IoU {last['val_mean_iou'].iloc[0]:.3f}"
    print(summary)
    return 0
