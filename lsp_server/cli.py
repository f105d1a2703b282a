"""The `codeflow` command: one parser, one module per subcommand (`cmd_<name>.py`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from codeflow.lsp_server import __version__

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = ("serve", "doctor", "complete", "context", "plan", "model", "quantize", "bench")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand, or with `only` that one: each command module
    imports what it runs (the LSP types, llama.cpp), so a one-shot command loads only its own."""
    parser = argparse.ArgumentParser(
        prog="codeflow", description="AI code completion, actions and hovers over LSP, on llama.cpp."
    )
    parser.add_argument("--version", action="version", version=f"codeflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        try:
            module = importlib.import_module(f"codeflow.lsp_server.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"codeflow.lsp_server.cmd_{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
