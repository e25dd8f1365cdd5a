"""Train the book's reference runs to the end and ship them small under reference/.

Every model whose scores or pictures the book shows is a reference run (the
list: --list). This command trains each one on the CPU (resuming an
interrupted run from its last checkpoint in --runs), then writes
reference/<name>/: float16 weights, config, training curve, validation
metrics and a manifest (the recipe's fingerprint, the data version, the
variables, the CPU time). `--check` only tells whether the shipped runs still
match the code (what tests/test_reference.py checks) and exits 1 if not.

Examples:
  python -m segnet_lib reference --list
  python -m segnet_lib reference sample-segnet
  python -m segnet_lib reference study          (every run under study/)
  python -m segnet_lib reference cells-unet     (a pending run: built only when named)
  python -m segnet_lib reference --check
"""
from __future__ import annotations

import argparse

from segnet_lib import reference, setup
from segnet_lib.cli import EXIT_FAILED, EXIT_OK, Refused

HELP = "train the book's reference runs and ship them under reference/ (make reference)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds this command's options to ``parser``."""
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="runs to build: names or globs (e.g. 'study/*'); none: every "
                             "shipped run (pending ones are built only when named)")
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that the shipped runs match the code (exit 1 if not)")
    parser.add_argument("--runs", metavar="DIR", default="runs/reference",
                        help="where the full training runs are kept (and resumed from)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="the reference folder to ship into; unset: the repository's reference/")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show the training progress bars")


def run(args: argparse.Namespace) -> int:
    """Lists, checks or builds; returns 0, or 1 when --check finds a stale run."""
    try:
        names = reference.select(args.names)
    except KeyError as err:
        raise Refused(str(err.args[0])) from None
    if args.list:
        pending = reference.PENDING_RUNS
        for name in names + ([] if args.names else list(pending)):
            run = pending.get(name) or reference.REFERENCE_RUNS[name]
            print(f"{name:<28} {run.description}" + (" [pending: not shipped yet]"
                                                      if name in pending else ""))
        return EXIT_OK
    setup(verbose=False)
    if args.check:
        stale = 0
        for name in names:
            problems = reference.check(name, args.out)
            stale += bool(problems)
            print(f"{name}: " + ("ok" if not problems else
                                 "; ".join(problems) + f" -> {reference.rebuild_command(name)}"))
        return EXIT_FAILED if stale else EXIT_OK
    for name in names:
        folder = reference.build(name, args.runs, args.out, progress=args.progress)
        facts = reference.manifest(name, args.out)
        print(f"shipped {folder} ({facts['cpu_seconds']} CPU-s)")
    print(f"reference/ holds {reference.shipped_size(args.out) / 1e6:.1f} MB")
    return EXIT_OK
