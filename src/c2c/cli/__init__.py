"""The ``c2c`` command line.

Every subcommand fails with a one-line ``c2c: error: ...`` instead of a traceback: a :class:`C2CError` names the bad
input, an OSError the path, anything else its type and message; ``C2C_DEBUG=1`` shows the traceback instead. A
command's ``--out`` is checked (a directory that can be written) before any work, and removed again when the command
fails before writing anything into it.

One module per command group adds its subcommands and their handlers: :mod:`~c2c.cli.data`,
:mod:`~c2c.cli.tokenizer`, :mod:`~c2c.cli.policy`, :mod:`~c2c.cli.eval`, :mod:`~c2c.cli.run`, :mod:`~c2c.cli.serve`
and :mod:`~c2c.cli.analyze` (``analyze`` and ``ablate``); options several of them share are in
:mod:`~c2c.cli.options`. All argument parsing of ``c2c`` lives in this package.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from c2c.cli.analyze import add_analysis_commands
from c2c.cli.data import add_data_commands
from c2c.cli.eval import add_eval_commands
from c2c.cli.options import API_KEY_ENV, api_key
from c2c.cli.policy import add_policy_commands
from c2c.cli.run import add_run_command
from c2c.cli.serve import add_serve_command
from c2c.cli.tokenizer import add_tokenizer_commands
from c2c.errors import C2CError

__all__ = ["API_KEY_ENV", "api_key", "build_parser", "main"]



def build_parser() -> argparse.ArgumentParser:
    from c2c import __version__

    parser = argparse.ArgumentParser(prog="c2c", description="Coarse-to-Control: plan-then-execute VLA policies")
    parser.add_argument("--version", action="version", version=f"c2c {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_data_commands(subparsers)
    add_tokenizer_commands(subparsers)
    add_policy_commands(subparsers)
    add_eval_commands(subparsers)
    add_run_command(subparsers)
    add_serve_command(subparsers)
    add_analysis_commands(subparsers)
    return parser


def _out_dir(args: argparse.Namespace) -> Path | None:
    """The output directory a command writes to: its --out, or the default of `c2c run` and `c2c ablate`."""
    out = getattr(args, "out", None)
    if out is None and args.command == "ablate" and getattr(args, "study", None):
        out = Path("runs") / f"study-{args.study}"
    elif out is None and args.command == "ablate":
        out = Path("runs") / (args.preset or "mt10")
    elif out is None and args.command == "run":
        out = Path("runs") / args.preset
    return out


def _output_guard(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """The output directory checked before the command starts (writable, not a file) and removed again when the
    command fails before writing anything into it. Dataset writers stage their output beside it."""
    from c2c.utils.outdir import output_directory

    out = _out_dir(args)
    if out is None:
        return contextlib.nullcontext()
    overwrite = getattr(args, "overwrite", None)  # commands that replace an existing --out say so
    return output_directory(out, "--out", staging_beside=args.command == "data", overwrite=overwrite)


def _debugging() -> bool:
    return os.environ.get("C2C_DEBUG", "") not in ("", "0")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _os_error_line(error: OSError) -> str:
    """An OSError as one line naming the path and what to do."""
    from c2c.utils.outdir import write_failure_hint

    reason, fix = write_failure_hint(error, "path")
    if error.filename is None:
        return f"{type(error).__name__}: {_first_line(str(error))} ({fix}; set C2C_DEBUG=1 for the traceback)"
    paths = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    return f"{paths}: {reason}; {fix}"


def main(argv: list[str] | None = None) -> int:
    """Run one command. A :class:`C2CError` prints ``c2c: error: <message>`` (exit 2); an OSError one line naming the
    path (exit 1); any other exception one line with its type (exit 1); ``C2C_DEBUG=1`` re-raises them instead, for
    the traceback. Ctrl-C prints one line (exit 130)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _output_guard(args):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("c2c: interrupted (rerun the same command to resume where supported)", file=sys.stderr)
        return 130
    except C2CError as err:
        if _debugging():
            raise
        print(f"c2c: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if _debugging():
            raise
        print(f"c2c: error: {_os_error_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:
        if _debugging():
            raise
        print(f"c2c: error: unexpected {type(err).__name__}: {_first_line(str(err))} (set C2C_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1
