"""Command line: ``python -m segnet_lib COMMAND ...`` (or ``segnet COMMAND``).

Each command lives in its own module of this package and provides ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``. Arguments are
checked by :func:`main` before any work starts; a bad value exits with status 2
and a message that names it.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Command name -> module inside segnet_lib.cli. The order is the order of --help.
COMMANDS = {
    "sample-data": "sample_data",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "export": "export",
    "study": "study",
}


# Argument types shared by the commands (argparse calls them on the raw text).

def at_least(cast, minimum):
    """An argparse ``type`` that converts with ``cast`` and refuses values below ``minimum``.

    Example: ``parser.add_argument("--steps", type=at_least(int, 1))``; ``--steps 0``
    exits with ``argument --steps: must be >= 1, got 0``.
    """
    def parse(text: str):
        value = cast(text)
        if not value >= minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value
    parse.__name__ = cast.__name__  # argparse names the type in its messages
    return parse


def image_size(text: str):
    """An argparse ``type``: ``'320'`` or ``'320x480'`` (height x width) -> ``(h, w)``."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH, got {text!r}") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected SIZE or HEIGHTxWIDTH with positive sizes, got {text!r}")
    return values


def _available_commands():
    for name, module in COMMANDS.items():
        try:
            yield name, importlib.import_module(f"segnet_lib.cli.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"segnet_lib.cli.{module}":
                raise


def build_parser() -> argparse.ArgumentParser:
    """Returns the top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m segnet_lib",
        description="SegNet, step by step: data, training, evaluation and prediction.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _available_commands():
        doc = (module.__doc__ or module.HELP).strip()
        cmd = sub.add_parser(
            name, help=module.HELP, description=doc,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _parser=cmd)
    return parser


def main(argv=None) -> int:
    """Parses ``argv`` and runs the chosen command; returns its exit status."""
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
