"""`codeflow quantize IN.gguf OUT.gguf --type Q4_K_M`: llama.cpp's quantizer, with progress."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codeflow.quant.errors import QuantError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `quantize` subcommand."""
    p = subparsers.add_parser(
        "quantize", help="quantize a GGUF model (never overwrites OUT)",
        description="Quantize a GGUF model with llama.cpp. Refuses to overwrite OUT.",
    )
    p.add_argument("input", type=Path, metavar="IN.gguf")
    p.add_argument("output", type=Path, metavar="OUT.gguf")
    p.add_argument("--type", dest="qtype", default="Q4_K_M", help="quant type (default Q4_K_M)")
    p.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")
    p.add_argument("--allow-requantize", action="store_true",
                   help="allow an already-quantized input (loses quality)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=handler)


def _progress(i: int, n: int, name: str) -> None:
    end = "\n" if i == n or not sys.stderr.isatty() else ""
    sys.stderr.write(f"\r[{i:>4}/{n}] {i * 100 // max(n, 1):>3}% {name:<40.40}{end}")
    sys.stderr.flush()


def handler(args: argparse.Namespace) -> int:
    """Quantize; exit 0 on success, 2 with a one-line message on bad input or failure."""
    from codeflow.quant.quantize import quantize

    try:
        info = quantize(args.input, args.output, args.qtype, threads=args.threads,
                        allow_requantize=args.allow_requantize,
                        progress=None if args.quiet else _progress)
    except QuantError as exc:
        print(f"codeflow quantize: {exc}", file=sys.stderr)
        return 2
    src_size = args.input.stat().st_size
    print(f"wrote {args.output} ({info.file_type}, {info.file_size / 2**20:.1f} MiB, "
          f"{info.file_size / max(src_size, 1):.0%} of the input)")
    return 0
