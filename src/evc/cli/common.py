"""What every `evc` command shares: the parser class, the error type and exit codes, the options more
than one command takes (declared once, in OPTIONS), argument types, and loading a codec from options."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import evc
from evc import arguments, threads
from evc.errors import EVCError, UntrainedModelError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# What the user can cause (bad input, options, files): reported as one line "evc: error: ...", exit 2.
USER_ERRORS = (EVCError, ValueError, OSError)


class CLIError(EVCError):
    """A mistake in the command line or its inputs: reported as one line on stderr, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (raised as CLIError), with no usage dump.

    A command parser made with ``own_extras=True`` reports unknown arguments itself ("see 'evc train
    --help'"); the others leave them to the top-level parser ("see 'evc --help'"). One made with
    ``complete=fn`` calls ``fn(parser)`` to add its arguments when it first parses, so that a command
    whose options come from a heavy module imports it only when that command runs.
    """

    def __init__(
        self, *args: Any, own_extras: bool = False, complete: Callable[[Parser], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.own_extras = own_extras
        self._complete = complete

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def, override]
        if self._complete is not None:
            complete, self._complete = self._complete, None
            complete(self)
        namespace, extras = super().parse_known_args(args, namespace)
        if self.own_extras and extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")  # argparse's own wording
        return namespace, extras


def one_line(exc: object) -> str:
    """An error or warning message folded onto one line (every report of `evc` is one line)."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def log(args: argparse.Namespace, message: str) -> None:
    """Progress and timings: on stderr, with --verbose only."""
    if getattr(args, "verbose", False):
        print(message, file=sys.stderr)


def _number(text: str) -> int | float | str:
    """The number the text spells (an int if it is one), else the text itself."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return text


def checked(check: Callable[[Any], Any], parse: Callable[[str], Any] = _number) -> Callable[[str], Any]:
    """argparse type: parse the text, then run the API's own check (evc.arguments) on it, so both say
    the same about every value. Text that is no number goes to the check as is, which names it."""

    def convert(text: str) -> Any:
        value = parse(text)
        try:
            return check(value)
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def integer(name: str) -> Callable[[str], int]:
    """argparse type for an integer whose range the API checks (it depends on the model)."""

    def convert(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None

    return convert


_SUBSTREAMS = "{%d..%d}" % arguments.SUBSTREAMS_RANGE
# Options several commands take: declared here once; a command may give its own help text.
OPTIONS: dict[str, dict[str, Any]] = {
    "--model": dict(default=None, help="model name (default: the best shipped model)"),
    "--weights": dict(metavar="PATH", help="weights file or folder instead of the shipped ones"),
    "--device": dict(default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)"),
    "--arithmetic": dict(
        choices=["exact", "float64", "float"], default="exact",
        help="entropy parameters in exact 8-bit integer arithmetic, so the file decodes on any device "
             "(default; format version 3), in exact float64 fixed point (slower; format version 2, which "
             "older evc releases read), or in float32: faster, but decodes only on the kind of device that "
             "wrote it",
    ),
    "--substreams": dict(type=checked(arguments.substreams), default=1, metavar=_SUBSTREAMS,
                         help="independent streams per coding step of the latent (default 1)"),
    "--force": dict(action="store_true", help="overwrite OUTPUT (with --out-dir: the outputs) if it exists"),
    "--threads": dict(
        type=checked(threads.parse, str), default=None, metavar="{auto,N}",
        help="CPU threads: auto (the cores free when each image starts) or a count; default: $EVC_THREADS, "
             "else $OMP_NUM_THREADS, else auto",
    ),
    "--out-dir": dict(metavar="DIR"),
    "--encoder-level": dict(type=integer("encoder_level"), default=None, metavar="K",
                            help="scalable models: run encoders 0..K only"),
}


def add_option(parser: argparse.ArgumentParser, flag: str, **changes: Any) -> None:
    """Add the shared option ``flag`` (a key of OPTIONS) to ``parser``; ``changes`` (such as the
    command's own ``help``, or ``help=None`` for none) replace the shared settings."""
    parser.add_argument(flag, **{**OPTIONS[flag], **changes})


def _untrained_message(exc: UntrainedModelError) -> str:
    what = f"model {exc.model} is untrained" if exc.model else "no model is trained yet"
    return (
        f"{what}: evc {evc.__version__} ships no trained weights for it; train them with `evc train` "
        "(README, \"Training\") and give the run's export/ folder with --weights PATH"
    )


def load_codec(args: argparse.Namespace, name: str | None) -> evc.Codec:
    """``evc.load`` with the command's options (--weights, --device, and those it has of --precision,
    --channels-last, --max-pixels, --threads; encode: --arithmetic, --substreams). Raises CLIError for a model
    with no trained weights."""
    options: dict[str, Any] = dict(
        precision=getattr(args, "precision", "float32"),
        channels_last=getattr(args, "channels_last", False),
        threads=getattr(args, "threads", None),
    )
    if args.command == "encode":
        options.update(
            exact=args.arithmetic != "float",
            arithmetic="float64" if args.arithmetic == "float64" else "int8",
            substreams=args.substreams,
        )
    try:
        codec = evc.load(name, device=args.device, weights=args.weights, **options)
    except UntrainedModelError as exc:
        raise CLIError(_untrained_message(exc)) from None
    if getattr(args, "max_pixels", None) is not None:
        codec.max_pixels = args.max_pixels
    return codec
