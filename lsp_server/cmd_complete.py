"""`codeflow complete FILE:LINE:COL`: the server's completion pipeline, streamed to the terminal."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import msgspec

from codeflow.context.engine import parse_position
from codeflow.context.errors import PositionError
from codeflow.lsp_server import settings as config
from codeflow.lsp_server.assistant.completion import CompletionRequest
from codeflow.lsp_server.convert import language_of
from codeflow.lsp_server.assistant.runtime import Runtime
from codeflow.quant.backend import CancelToken
from codeflow.quant.errors import QuantError


class CliError(Exception):
    """Bad input on the command line: printed as one line, exit code 2."""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `complete` subcommand."""
    p = sub.add_parser("complete", help="complete at FILE:LINE:COL (1-based) and stream the result")
    p.add_argument("target", metavar="FILE:LINE:COL")
    p.add_argument("--workspace", type=Path, help="workspace root for cross-file context (default: the file's folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.add_argument("--model", help="GGUF file to use (default: the embedded Gemma 3 270M)")
    p.add_argument("--max-tokens", type=int, help="most tokens to generate")
    p.add_argument("--no-context", action="store_true", help="use the current file only")
    p.set_defaults(func=run)


def read_source(path: Path) -> str:
    """The file as text, or a clear error for missing, binary or non-UTF-8 files."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"\0" in data[:8192]:
        raise CliError(f"{path} looks binary; refusing to complete it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"{path} is not UTF-8 ({exc.reason} at byte {exc.start})") from exc


def split(source: str, line: int, col: int, path: Path) -> tuple[str, str]:
    """Prefix and suffix at a 1-based position; the column counts characters."""
    lines = source.split("\n")
    if line > len(lines):
        raise CliError(f"{path} has {len(lines)} lines; line {line} is past the end")
    text = lines[line - 1].rstrip("\r")
    if col > len(text) + 1:
        raise CliError(f"line {line} of {path} has {len(text)} characters; column {col} is past its end")
    offset = sum(len(x) + 1 for x in lines[: line - 1]) + col - 1
    return source[:offset], source[offset:]


def cli_settings(args: argparse.Namespace, workspace: Path) -> config.Settings:
    """codeflow.toml layers, then the flags, through the one Settings Struct."""
    flags: dict = {}
    if args.model:
        flags.setdefault("model", {})["path"] = str(Path(args.model).resolve())
    if args.max_tokens:
        flags.setdefault("completion", {}).update(maxTokens=args.max_tokens, maxTokensInvoked=args.max_tokens)
    if args.no_context:
        flags.setdefault("context", {})["enabled"] = False
    flags.setdefault("completion", {})["backgroundTokens"] = 0
    settings, errors = config.build(workspace, flags)
    if errors:
        raise CliError("; ".join(str(e) for e in errors))
    return settings


def run(args: argparse.Namespace) -> int:
    """Complete once; exit 2 on bad input, 1 when the model cannot run."""
    try:
        return _complete(args)
    except CliError as exc:
        print(f"codeflow complete: {exc}", file=sys.stderr)
        return 2
    except QuantError as exc:
        print(f"codeflow complete: {exc}", file=sys.stderr)
        return 1


def _complete(args: argparse.Namespace) -> int:
    try:
        path, line, col = parse_position(args.target)
    except PositionError as exc:
        raise CliError(str(exc)) from exc
    source = read_source(path)
    prefix, suffix = split(source, line, col, path)
    workspace = (args.workspace or path.parent).resolve()
    settings = cli_settings(args, workspace)
    errors: list[str] = []
    runtime = Runtime(settings, workspace, lambda s: errors.append(s.message) if s.state == "error" else None)
    try:
        if settings.context.enabled:
            runtime.start_context([workspace], watch=False)
        status = runtime.load()
        if status is None or status.state == "error":
            raise QuantError(errors[-1] if errors else "no backend could start")
        rel = path.resolve().relative_to(workspace).as_posix() if path.resolve().is_relative_to(workspace) else path.name
        req = CompletionRequest(
            key=path.resolve().as_uri(), path=rel, language=language_of(str(path)),
            prefix=prefix, suffix=suffix, invoked=True,
        )
        return _emit(runtime, req, args.json)
    finally:
        runtime.close()


def _emit(runtime: Runtime, req: CompletionRequest, as_json: bool) -> int:
    started = time.perf_counter()
    pieces = []
    for piece in runtime.completion.stream(req, CancelToken()):
        pieces.append(piece)
        if not as_json:
            sys.stdout.write(piece)
            sys.stdout.flush()
    text = "".join(pieces)
    runtime.completion.wait_idle(timeout=5.0)
    if as_json:
        stats = runtime.completion.last
        out = {
            "text": text, "prompt_kind": stats.prompt_kind, "model": runtime.backend().info.name,
            "tokens": stats.tokens, "seconds": round(time.perf_counter() - started, 3),
        }
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    else:
        sys.stdout.write("\n")
    return 0
