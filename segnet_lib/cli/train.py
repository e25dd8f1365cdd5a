"""Train SegNet, or resume a run: rerunning with the same --out continues it.

Every setting starts from a recipe (listed below, with what each sets) and can
be overridden one by one; the default recipe is sample-cpu for --data sample,
cells-cpu for --data cells (the generated data) and voc-gpu otherwise.

--data takes 'sample', 'cells', a VOC folder or an RLE CSV. A CSV is read as
its header says: the Sartorius train.csv header (id, annotation, width, height,
cell_type, ...) means row-major RLE (--rle-order C), one class per cell type
(--class-column cell_type: background, shsy5y, astro, cort) and the images in
train/ next to it; overlapping cells are painted in file order (--overlap
last). Any other CSV needs --rle-order; its class column, if any, is found by
name (or give --class-column), and without one every mask is 'foreground'.
The run names its classes from the data: evaluate and predict report them.

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
  python -m segnet_lib train --data sartorius/train.csv --out runs/cells
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from segnet_lib import datasets, export, recipes, setup, train
from segnet_lib.checkpoints import CONFIG_FILE, RunInUse
from segnet_lib.cli import Refused, add_config_options
from segnet_lib.config import RESUMABLE_FIELDS, TrainConfig, check_run_dir, read_config

HELP = "train SegNet (resumes when --out holds a run); see --help for every option"

# Options naming files: made absolute, so the saved config finds them from anywhere.
_PATH_FIELDS = ("data", "image_dir", "val_csv", "vgg16_weights")


def recipe_list() -> str:
    """The recipes (name, summary, main numbers), from :data:`segnet_lib.recipes.RECIPES`."""
    lines = ["recipes (--recipe):"]
    for name, recipe in recipes.RECIPES.items():
        lines.append(f"  {name:<11} {recipes.summary(recipe)}")
        lines.append(f"  {'':<11} {recipes.describe(recipe())}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.epilog = recipe_list() + "\n\n" + (parser.epilog or "")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="run folder; rerunning with the same --out resumes the run")
    parser.add_argument("--recipe", choices=tuple(recipes.RECIPES), default=None, help=(
        "starting settings (see below); default: sample-cpu for --data sample, cells-cpu "
        "for --data cells, else voc-gpu"))
    add_config_options(parser, TrainConfig)
    parser.add_argument("--export-format", choices=export.EXPORT_FORMATS + ("none",),
                        default="frozen",
                        help="inference model written to <out>/export when training ends")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show the progress bar")


def _given(args: argparse.Namespace) -> dict:
    names = [f.name for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)]
    given = {f: getattr(args, f) for f in names if getattr(args, f) is not None}
    for key in _PATH_FIELDS:
        if key in given and not (key == "data" and given[key] in datasets.NAMED_DATA):
            given[key] = str(Path(given[key]).expanduser().resolve())
    return given


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`segnet_lib.config.TrainConfig` the arguments ask for.

    Starts from the run saved in ``--out`` if there is one, else from the
    recipe, and applies every option given.

    Raises:
        ValueError: a bad value, or a change a resumed run cannot take.
        FileNotFoundError: missing data or weights.
    """
    given = _given(args)
    out = Path(args.out)
    if (out / CONFIG_FILE).is_file():
        base = read_config(out)
        if args.recipe is not None:
            recipe = recipes.RECIPES[args.recipe](given.get("variant", base.variant))
            given = {**{k: v for k, v in recipe.to_dict().items() if k not in RESUMABLE_FIELDS},
                     **given}
    else:
        data = given.get("data", "sample")
        name = args.recipe or recipes.DEFAULT_RECIPES.get(data, "voc-gpu")
        base = recipes.RECIPES[name](given.get("variant", "segnet"))
    config = base.replace(**given)
    datasets.check_data(config.data, rle_order=config.rle_order, image_dir=config.image_dir,
                        val_csv=config.val_csv)
    if config.vgg16_weights is not None and not Path(config.vgg16_weights).is_file():
        raise FileNotFoundError(f"--vgg16 {config.vgg16_weights}: not found")
    check_run_dir(config, out)
    return config


def run(args: argparse.Namespace) -> int:
    """Checks the arguments, then trains; returns 0 (the CLI maps failures to 1, Ctrl-C to 130)."""
    try:
        config = build_config(args)
    except (ValueError, FileNotFoundError) as err:
        raise Refused(str(err)) from None
    setup(seed=config.seed, verbose=False)
    try:
        history = train.train(config, args.out, progress=args.progress,
                              export=args.export_format == "frozen")
    except RunInUse as err:
        raise Refused(str(err)) from None
    if args.export_format == "saved_model":
        target = Path(args.out) / "saved_model"
        if not target.exists():
            export.export_model(args.out, out=target, format="saved_model")
        print(f"SavedModel: {target}")
    last = history.dropna(subset=["val_mean_iou"]).tail(1)
    summary = f"Done: {args.out} at step {int(history['step'].iloc[-1]) if len(history) else 0}"
    if len(last):
        summary += f", validation mean IoU {last['val_mean_iou'].iloc[0]:.3f}"
    print(summary)
    return 0
