"""`codeflow serve`: the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = sub.add_parser("serve", help="run the language server (stdio by default)")
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP address instead of stdio")
    p.add_argument("--log-file", metavar="PATH", help="write the server log here (default: stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port), with a clear error."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"codeflow serve: --tcp expects HOST:PORT, got {value!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    """Configure logging (never to stdout: it carries LSP) and serve until the client exits."""
    handler: logging.Handler = (
        logging.FileHandler(args.log_file, encoding="utf-8") if args.log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    # Their INFO/DEBUG lines echo every message and file event; Codeflow logs what matters.
    for noisy in ("pygls", "watchdog"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    address = parse_address(args.tcp) if args.tcp else None
    from codeflow.lsp_server.server import server

    if address is not None:
        server.start_tcp(*address)
    else:
        server.start_io()
    return 0
