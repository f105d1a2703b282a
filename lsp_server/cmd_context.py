"""`codeflow context FILE:LINE:COL`: the packed cross-file context for a cursor (issue 4)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from codeflow.context.engine import ContextEngine, parse_position
from codeflow.context.errors import ContextError
from codeflow.lsp_server import settings as settings_mod
from codeflow.lsp_server.assistant import context_view


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `context` subcommand."""
    p = subparsers.add_parser("context", help="show the cross-file context packed for a cursor",
                              description="Print the context Codeflow would give the model at FILE:LINE:COL "
                                          "(1-based). The file is read from disk.")
    p.add_argument("position", metavar="FILE:LINE:COL")
    p.add_argument("--workspace", type=Path, default=None, help="workspace root (default: the current directory)")
    p.add_argument("--budget", type=int, default=None, help="token budget (default: context.budgetTokens)")
    p.add_argument("--json", action="store_true", help="print the stable JSON contract")
    p.add_argument("--file-sep", default=None, help="render headers with this FIM file separator")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the index cache")
    p.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"codeflow context: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Index the workspace, query the cursor and print the packed context."""
    try:
        file, line, col = parse_position(args.position)
    except ContextError as exc:
        return _fail(str(exc))
    workspace = (args.workspace or Path.cwd()).resolve()
    if not workspace.is_dir():
        return _fail(f"workspace {workspace} is not a directory")
    path = file if file.is_absolute() else (Path.cwd() / file)
    if not path.is_file():
        return _fail(f"no such file: {file}")
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        return _fail(f"cannot read {file}: {exc.strerror or exc}")
    settings, errors = settings_mod.build(workspace)
    for err in errors:
        print(f"codeflow context: {err}", file=sys.stderr)
    ctx = settings.context
    engine = ContextEngine([workspace], ctx.engine_config(use_cache=not args.no_cache))
    try:
        engine.index_now()
        packed = engine.query(path, text, line - 1, col - 1, args.budget or ctx.budget_tokens,
                              file_sep=args.file_sep)
    except ContextError as exc:
        return _fail(str(exc))
    finally:
        engine.stop()
    if args.json:
        sys.stdout.write(msgspec.json.encode(packed).decode() + "\n")
    else:
        sys.stdout.write(context_view.markdown(packed, f"{_shown(path, workspace)}:{line}"))
    return 0


def _shown(path: Path, workspace: Path) -> str:
    """The file as the editors label it: relative to the workspace when inside it."""
    try:
        return path.resolve().relative_to(workspace).as_posix()
    except ValueError:
        return str(path)

