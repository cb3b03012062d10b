"""The `evc` command: the top-level parser and the error handling every command shares.

Commands live in one module per group: evc.cli.codec (encode, decode, info, models), evc.cli.eval
(eval, compare, bench, complexity) and evc.cli.train (train, distill); each adds its parsers in
``register`` and sets ``run``, the function the command runs.

Every failure the user can cause ends with one line on stderr ("evc: error: ...") and exit code 2;
warnings are one line each ("evc: warning: ..."); timings go to stderr only with --verbose, and a
progress line only to a terminal, never with --quiet (encode and decode: evc.cli.progress; eval and
compare: a progress bar, evc.eval.progress); nothing but requested output
goes to stdout. "-" as a file name is standard input or output.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import evc
import evc.cli.codec
import evc.cli.eval
import evc.cli.train
from evc.cli.common import EXIT_BROKEN_PIPE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, USER_ERRORS, Parser, one_line
from evc.threads import LoadSample, process_threads


def build_parser() -> argparse.ArgumentParser:
    """The parser of every `evc` command line; ``parse_args(argv).run(args)`` runs the command."""
    parser = Parser(prog="evc", description="EVC neural image codec")
    parser.add_argument("--version", action="version", version=f"evc {evc.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in (evc.cli.codec, evc.cli.eval, evc.cli.train):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `evc` command line ``argv`` (default: sys.argv[1:]); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # one line each, like errors
        warnings.filterwarnings("always", category=UserWarning, module=r"evc(\.|$)")  # every run tells
        return _main(argv)


def _main(argv: list[str]) -> int:
    started = LoadSample()  # the thread policy's first choice measures the load from here (start-up)
    try:
        args = build_parser().parse_args(argv)
        # A command that computes nothing, or one on ONNX Runtime, whose sessions take their own thread
        # count (evc.onnx.runtime) and whose process must not import torch.
        if not hasattr(args, "threads") or getattr(args, "onnx", None) is not None:
            return args.run(args)
        # The whole command (loading the model too) follows the thread policy; each image then
        # measures again (Codec).
        with process_threads(args.threads, since=started):
            return args.run(args)
    except KeyboardInterrupt:
        print("evc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `evc models | head`: the reader left; stop quietly like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    except USER_ERRORS as exc:
        print(f"evc: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug, not bad input: still no traceback unless asked for
        if os.environ.get("EVC_DEBUG"):
            raise
        print(f"evc: internal error (set EVC_DEBUG=1 for details): {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return EXIT_INTERNAL


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (the library's and ours) as one line each on stderr, like errors."""
    text = f"evc: warning: {one_line(message)}"
    tqdm = sys.modules.get("tqdm")  # imported only where a progress line may be on the terminal
    if tqdm is not None:
        tqdm.tqdm.write(text, file=sys.stderr)  # above the progress line, not into it
    else:
        print(text, file=sys.stderr)
