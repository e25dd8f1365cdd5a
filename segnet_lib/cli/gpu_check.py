"""Measure the full SegNet's training speed and memory here, beside the paper's Table 6.

At 360x480, batch 1 and 4, float32 and mixed precision (float16 on a GPU,
bfloat16 on a CPU that has it), XLA off and on: forward and backward time per
step, training images per second and peak memory (GPU allocator, or resident
memory on a CPU), each configuration in its own process. The paper's row
(NVIDIA Titan) comes first. --smoke runs the same code at a tiny size on any
machine, to check that it works.

Examples:
  make gpu-check
  python -m segnet_lib gpu-check --smoke
"""
from __future__ import annotations

import argparse
import json

from segnet_lib import gpu_check, setup

HELP = "time the full SegNet's training on this GPU (or CPU) beside the paper's Table 6"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny size (64x64, 1/8 width, batch 1, 2 steps): checks the code")
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Runs the checks (each in a child process) and prints the table; 0 if all ran."""
    setup(seed=0, verbose=False)
    if args.child:
        values = json.loads(args.child)
        values["size"] = tuple(values["size"])
        print(json.dumps(gpu_check.measure(gpu_check.Check(**values))))
        return 0
    results = gpu_check.run_checks(gpu_check.checks(smoke=args.smoke))
    print(gpu_check.format_table(results))
    return 0 if all(isinstance(r, dict) for _, r in results) else 1
