"""Command line: ``python -m segnet_lib COMMAND ...`` (or ``segnet COMMAND``).

Each command lives in its own module of this package and provides ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args) -> int``. Every command
ends with one of the exit statuses in :data:`EXIT_CODES`, the same for the same
kind of outcome whatever the command: a command refuses bad arguments before
any work by raising :class:`Refused` (or through argparse, which exits with 2
too), and :func:`main` turns a failure during the work and an interruption
into their statuses.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import textwrap
import typing
from pathlib import Path

# Not bound as "reference": the command module segnet_lib.cli.reference takes that name.
from segnet_lib import reference as reference_runs
from segnet_lib._tf import tf

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130

#: Exit status -> what it means (shown in every command's --help).
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_FAILED: "the work failed (unreadable data, a diverged training, ...)",
    EXIT_REFUSED: "refused before any work: a bad or missing argument or file, or an option "
                  "the model cannot honour (e.g. --mc-samples on a non-Bayesian model)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM; train saves a checkpoint first)",
}

# Command name -> module inside segnet_lib.cli. The order is the order of --help.
COMMANDS = {
    "sample-data": "sample_data",
    "train": "train",
    "evaluate": "evaluate",
    "predict": "predict",
    "export": "export",
    "study": "study",
    "gpu-check": "gpu_check",
    "reference": "reference",
}


class Refused(Exception):
    """A command refuses to start: the message names the argument and what is wrong."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks; shows a default only where there is a real one.

    argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: None)`` to
    every option that is unset unless given, and ``(default: False)`` to every
    switch: noise. Here an option shows its default only when it has one.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or not action.option_strings or default is None
                or default is argparse.SUPPRESS or isinstance(default, bool)):
            return text
        return text + " (default: %(default)s)"


def exit_codes_epilog() -> str:
    """The ``exit status:`` paragraph of every ``--help``."""
    lines = ["exit status:"]
    for code, meaning in EXIT_CODES.items():
        lines += textwrap.wrap(meaning, 78, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7)
    return "\n".join(lines)


# Argument types shared by the commands (argparse calls them on the raw text).

def at_least(cast, minimum):
    """An argparse ``type`` that converts with ``cast`` and refuses values below ``minimum``.

    Example: ``parser.add_argument("--limit", type=at_least(int, 1))``; ``--limit 0``
    exits with ``argument --limit: must be >= 1, got 0``.
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


def int_list(text: str):
    """An argparse ``type``: ``'0,1,7'`` -> ``(0, 1, 7)`` (comma-separated integers)."""
    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, e.g. 0,1,7, got {text!r}") from None
    return values


def model_path(text: str, flag: str = "--checkpoint") -> Path:
    """A model argument as a path: a run folder, an export, or a shipped reference run's name.

    ``sample-segnet`` (any name of ``reference --list``) means the reference
    run shipped in ``reference/``, so ``predict photo.jpg --checkpoint
    sample-segnet`` works without training anything.

    Raises:
        Refused: no such file or folder, and no reference run of that name.
    """
    if text in reference_runs.REFERENCE_RUNS:
        try:
            return reference_runs.path(text)
        except FileNotFoundError as err:
            raise Refused(f"{flag} {text}: {err}") from None
    path = Path(text).expanduser()
    if not path.exists():
        raise Refused(f"{flag} {text}: no such run folder or exported model, and no reference "
                      "run of that name (see `python -m segnet_lib reference --list`)")
    return path


def option_flag(field: dataclasses.Field) -> str:
    """The command-line flag of a config field (its ``flag`` metadata, else ``--field-name``)."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def add_config_options(parser, config_class, names=None) -> list:
    """Adds one option per field of ``config_class`` (a dataclass), built from its metadata.

    The flag, help, metavar and choices come from each field's metadata (see
    :class:`segnet_lib.config.TrainConfig`), the value type from its annotation
    (``bool``: ``--x/--no-x``; a ``(height, width)`` tuple: ``HxW``; a tuple of
    any length: comma-separated integers). Every
    default is None, meaning "not given": the command decides what that means
    (a recipe, a saved run).

    Args:
        parser: an ``argparse.ArgumentParser`` (or argument group).
        config_class: the dataclass.
        names: the fields to add (default: every field with a flag).

    Returns:
        The names of the fields added (each option's ``dest``).
    """
    hints = typing.get_type_hints(config_class)
    added = []
    for field in dataclasses.fields(config_class):
        if field.metadata.get("flag") == "" or (names is not None and field.name not in names):
            continue
        kind = hints[field.name]
        if typing.get_origin(kind) is typing.Union:  # Optional[X] -> X
            kind = next(k for k in typing.get_args(kind) if k is not type(None))
        options = dict(dest=field.name, default=None, help=field.metadata["help"])
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            if typing.get_origin(kind) is tuple:
                options["type"] = int_list if Ellipsis in typing.get_args(kind) else image_size
            else:
                options["type"] = kind
            if field.metadata.get("choices"):
                options["choices"] = field.metadata["choices"]
            if field.metadata.get("metavar"):
                options["metavar"] = field.metadata["metavar"]
        parser.add_argument(option_flag(field), **options)
        added.append(field.name)
    return added


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
        epilog=exit_codes_epilog(), formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in _available_commands():
        doc = (module.__doc__ or module.HELP).strip()
        cmd = sub.add_parser(name, help=module.HELP, description=doc, epilog=exit_codes_epilog(),
                             formatter_class=HelpFormatter)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _parser=cmd)
    return parser


def main(argv=None) -> int:
    """Parses ``argv`` and runs the chosen command; returns its exit status.

    A refusal (bad arguments) exits through ``parser.error``: usage and the
    message on stderr, ``SystemExit(2)``. A failure during the work prints
    ``error: ...`` and returns 1; an interruption returns 130.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or EXIT_OK)
    except Refused as err:
        args._parser.error(str(err))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except tf.errors.OpError as err:  # e.g. a file that fails to decode inside the input pipeline
        print(f"error: {err.message}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
