"""Export a training run's checkpoint as an inference model (frozen graph or SavedModel).

The inference graph (is_training=False, batch-norm moving averages; no loss,
optimiser or input pipeline) is built fresh, the checkpoint's values are
restored into it, and it is written as one frozen GraphDef (frozen_graph.pb)
or as a SavedModel (signature: uint8 images -> class probabilities), with
export.json naming the tensors, the classes and the checkpoint. `predict` and
`evaluate` load the result without rebuilding the training graph; so does
segnet_lib.export.load_predictor. `train` already exports its best checkpoint
to RUN/export when it finishes; this command exports another checkpoint, or
in the other format.

Examples:
  python -m segnet_lib export --checkpoint runs/voc
  python -m segnet_lib export --checkpoint runs/voc --which latest \\
      --format saved_model --out exported/voc_latest
"""
from __future__ import annotations

import argparse
from pathlib import Path

from segnet_lib import export, setup
from segnet_lib.checkpoints import CONFIG_FILE, find_checkpoint
from segnet_lib.cli import Refused

HELP = "freeze a run's checkpoint into an inference model that predict/evaluate load"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, metavar="RUN",
                        help="run folder written by `train`")
    parser.add_argument("--which", default="best", metavar="{best,latest,PREFIX}",
                        help="the best-validation checkpoint, the newest, or a checkpoint "
                             "prefix such as RUN/ckpt-00000600/model")
    parser.add_argument("--format", choices=export.EXPORT_FORMATS, default="frozen",
                        help="one frozen GraphDef file, or a SavedModel folder")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="destination folder; unset: RUN/export (a frozen graph there is "
                             "replaced; a SavedModel needs a folder that does not exist yet)")


def run(args: argparse.Namespace) -> int:
    """Exports; prints the destination and returns 0."""
    run_dir = Path(args.checkpoint).expanduser()
    if not (run_dir / CONFIG_FILE).is_file():
        raise Refused(f"--checkpoint {run_dir}: not a training run folder (no {CONFIG_FILE})")
    try:
        find_checkpoint(run_dir, args.which)
    except FileNotFoundError as err:
        raise Refused(f"--which {args.which}: {err}") from None
    out = Path(args.out).expanduser() if args.out else run_dir / export.EXPORT_DIR
    if args.format == "saved_model" and out.exists():
        raise Refused(f"{out} exists; a SavedModel needs a new folder (--out)")
    setup(verbose=False)
    out = export.export_model(run_dir, out, checkpoint=args.which, format=args.format)
    print(f"exported ({args.format}) to {out}")
    return 0
