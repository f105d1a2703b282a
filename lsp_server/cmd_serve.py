"""`codeflow serve`: the language server over stdio (default) or TCP."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    p = sub.add_parser("serve", help="run the language server (stdio by default)")
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on a TCP address instead of stdio (loopback only)")
    p.add_argument("--allow-remote-clients", action="store_true",
                   help="let --tcp listen on a non-loopback address: anyone who can reach it can read "
                        "the workspace's code through the server, with no authentication")
    p.add_argument("--log-file", metavar="PATH", help="write the server log here (default: stderr)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def parse_address(value: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port), with a clear error."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"codeflow serve: --tcp expects HOST:PORT, got {value!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1 or localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def check_exposure(host: str, allowed: bool) -> None:
    """Refuse a non-loopback address unless the user opted in; warn when they did (issue 11 §4).

    The protocol has no authentication: a peer that connects can ask for completions, context
    and explanations, which quote the workspace's code.
    """
    if is_loopback(host):
        return
    if not allowed:
        raise SystemExit(
            f"codeflow serve: refusing to listen on {host}: any client that reaches it could read the "
            "workspace's code, and the LSP connection has no authentication. Use 127.0.0.1 (and an "
            "SSH tunnel for another machine), or pass --allow-remote-clients if you accept the risk."
        )
    print(f"codeflow serve: WARNING: listening on {host} with no authentication: anyone who can reach "
          "this port can read the workspace's code through the server", file=sys.stderr, flush=True)


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
    if address is not None:
        check_exposure(address[0], args.allow_remote_clients)
    from codeflow.lsp_server.app import server

    if address is not None:
        server.start_tcp(*address)
    else:
        server.start_io()
    return 0
