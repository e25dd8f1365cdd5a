"""The paper's decoder study (Table 1), small: train every decoder the same way and compare.

Trains SegNet-Basic's encoder with each decoder (unpool = SegNet-Basic,
deconv_add = FCN-Basic, deconv = FCN-Basic-NoAddition, bilinear =
Bilinear-Interpolation, unet = U-Net) on the same data, schedule and seed, scores the final
weights on the validation split (global and class-average accuracy, mean IoU,
boundary F1), and measures parameters, the bytes each decoder keeps from the
encoder per image (int64 indices / float32 maps, and with 2-bit indices) and
the inference time per image. Prints the table next to the paper's numbers and
writes results.csv (and study.json) to --out. Finished runs in --out are
reused, so rerunning only scores and times again.

The recipes (--recipe) are listed below with what each sets. Notebook 07
shows the cpu recipe trained with three seeds per decoder: those 15 runs are
reference runs (`python -m segnet_lib reference study` makes them).

--memory measures instead the peak memory of every decoder at the paper's
size (64 features, 11 classes, 360x480; inference and a training step, batch
1 and 4; one child process each) and writes reference/study/memory.csv, the
table notebook 07 shows (it depends on the machine, which it names).

Examples:
  python -m segnet_lib study --out runs/study
  python -m segnet_lib study --out runs/study --decoders unpool,deconv_add --steps 600
  python -m segnet_lib study --memory
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from segnet_lib import model, recipes, setup, study
from segnet_lib.cli import Refused, at_least, image_size
from segnet_lib.files import atomic_write_text

_positive_int = at_least(int, 1)

HELP = "the decoder study: train each decoder variant alike, compare accuracy, memory and time"


def _decoders(text: str):
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in model.DECODERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown decoder(s) {unknown or text!r}; choose from {','.join(model.DECODERS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    lines = ["recipes (--recipe):"]
    for name, recipe in recipes.STUDY_RECIPES.items():
        lines += [f"  {name:<6} {recipes.summary(recipe)}",
                  f"  {'':<6} {recipes.describe(recipe())}"]
    parser.epilog = "\n".join(lines) + "\n\n" + (parser.epilog or "")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="folder of the runs and results.csv; unset: a cache folder named "
                             "after the recipe ($SEGNET_CACHE_DIR/studies/decoders-HASH)")
    parser.add_argument("--recipe", choices=tuple(recipes.STUDY_RECIPES), default="cpu",
                        help="the training recipe every decoder shares (see above)")
    parser.add_argument("--decoders", type=_decoders, default=study.DEFAULT_DECODERS,
                        metavar="LIST", help="comma-separated SegNetConfig.decoder values")
    parser.add_argument("--data", default=None, metavar="{sample,DIR}",
                        help="'sample' or a VOC-layout folder; unset: the recipe's")
    parser.add_argument("--steps", type=_positive_int, default=None,
                        help="training steps per decoder; unset: the recipe's")
    parser.add_argument("--width", type=at_least(float, 0.01), default=None,
                        help="width multiplier of SegNet-Basic's 64 features; unset: the recipe's")
    parser.add_argument("--crop", type=image_size, default=None, metavar="SIZE",
                        help="training crop, SIZE or HxW; unset: the recipe's")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="images per step; unset: the recipe's")
    parser.add_argument("--seed", type=int, default=None, help="seed; unset: the recipe's (0)")
    parser.add_argument("--eval-limit", type=_positive_int, default=None,
                        help="score only the first N validation images; unset: all")
    parser.add_argument("--memory-size", type=image_size, default=(360, 480), metavar="HxW",
                        help="image size at which the stored state is counted (the paper's 360x480)")
    parser.add_argument("--timing-repeats", type=_positive_int, default=10,
                        help="timed inference rounds per decoder (median reported)")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    parser.add_argument("--memory", action="store_true",
                        help="measure peak memory at the paper's size instead (see above) and "
                             "write reference/study/memory.csv")


def _recipe(args):
    options = {"data": args.data, "steps": args.steps, "width_multiplier": args.width,
               "crop_size": args.crop, "batch_size": args.batch_size, "seed": args.seed}
    return recipes.study_recipe(args.recipe, **{k: v for k, v in options.items() if v is not None})


def measure(args: argparse.Namespace) -> int:
    """Measures the memory table and writes it where notebook 07 reads it; returns 0."""
    setup(verbose=False)
    table = study.measure_memory_table(args.decoders, log=print)
    path = study.memory_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv(index=False))
    print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs the study, prints the tables and writes results.csv; returns 0."""
    if args.memory:
        return measure(args)
    try:
        config = _recipe(args)
    except ValueError as err:
        raise Refused(str(err)) from None
    if config.data != "sample" and not Path(config.data).exists():
        raise Refused(f"--data {config.data}: no such folder")
    setup(seed=config.seed, verbose=False)
    out_dir = Path(args.out) if args.out else study.study_dir(config, args.decoders)
    table = study.run_study(config, out_dir, decoders=args.decoders,
                            memory_size=args.memory_size, eval_limit=args.eval_limit,
                            timing_repeats=args.timing_repeats, progress=args.progress)
    shown = table.copy()
    for column in ("state_bytes", "state_bytes_2bit"):
        shown[column.replace("bytes", "MB")] = shown.pop(column) / 1e6
    shown = shown.drop(columns=["index_bytes", "feature_bytes"])
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(f"\nDecoder study ({config.steps} steps each, state at "
              f"{args.memory_size[0]}x{args.memory_size[1]}):\n")
        print(shown.round(3).to_string(), end="\n\n")
        print("Next to the paper's Table 1 (CamVid test, percent):\n")
        print(study.paper_comparison(table).round(1).to_string())
    print(f"\nwrote {out_dir / study.RESULTS_FILE}")
    return 0
