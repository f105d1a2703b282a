"""The `codeflow` command: one parser, one module per subcommand (`cmd_<name>.py`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from codeflow.lsp_server import __version__

# Each module defines `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = ("serve", "doctor", "complete", "context", "plan", "quantize", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, subcommands included."""
    parser = argparse.ArgumentParser(
        prog="codeflow", description="AI code completion, actions and hovers over LSP, on llama.cpp."
    )
    parser.add_argument("--version", action="version", version=f"codeflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
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
    parser = build_parser()
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
