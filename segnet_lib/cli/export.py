"""Export a training run's checkpoint as an inference model (frozen graph or SavedModel).

The inference graph (is_training=False, batch-norm moving averages; no loss,
optimiser or input pipeline) is built fresh, the checkpoint's values are
restored into it, and it is written as one frozen GraphDef (frozen_graph.pb)
or as a SavedModel (signature: uint8 images -> class probabilities), with
export.json naming the tensors, the classes and the checkpoint. `predict` and
`evaluate` load the result without rebuilding the training graph; so does
segnet_lib.train.load_predictor. `train` already exports its best checkpoint
to RUN/export when it finishes; this command exports another checkpoint, or
in the other format.

Examples:
  python -m segnet_lib export --checkpoint runs/voc
  python -m segnet_lib export --checkpoint runs/voc --which latest \\
      --format saved_model --out exported/voc_latest
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "freeze a run's checkpoint into an inference model that predict/evaluate load"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    from segnet_lib import train

    parser.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="run folder written by `train`")
    parser.add_argument("--which", default="best", metavar="{best,latest,PREFIX}",
                        help="the best-validation checkpoint, the newest, or a checkpoint "
                             "prefix such as RUN/ckpt-00000600/model")
    parser.add_argument("--format", choices=train.EXPORT_FORMATS, default="frozen",
                        help="one frozen GraphDef file, or a SavedModel folder")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="destination folder; unset: RUN/export (a frozen graph there is "
                             "replaced; a SavedModel needs a folder that does not exist yet)")


def run(args: argparse.Namespace) -> int:
    """Exports; prints the destination and returns 0 (1 if there is nothing to export)."""
    from segnet_lib import setup, train

    run_dir = Path(args.checkpoint).expanduser()
    if not (run_dir / train.CONFIG_FILE).is_file():
        args._parser.error(f"--checkpoint {run_dir}: not a training run folder "
                           f"(no {train.CONFIG_FILE})")
    out = Path(args.out).expanduser() if args.out else run_dir / train.EXPORT_DIR
    if args.format == "saved_model" and out.exists():
        args._parser.error(f"{out} exists; a SavedModel needs a new folder (--out)")
    setup(verbose=False)
    try:
        out = train.export_model(run_dir, out, checkpoint=args.which, format=args.format)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"exported ({args.format}) to {out}")
    return 0
