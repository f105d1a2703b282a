"""`codeflow bench NAME`: run `bench/NAME.py` from the source checkout."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path


def bench_dir() -> Path | None:
    """The checkout's bench/ folder (present in editable installs and source trees)."""
    here = Path(__file__).resolve().parent.parent / "bench"
    for candidate in (here, Path.cwd() / "bench"):
        if (candidate / "report.py").is_file():
            return candidate
    return None


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand."""
    p = sub.add_parser("bench", help="run a benchmark (completion, context, plan, actions) from bench/")
    p.add_argument("name", help="benchmark name: a file bench/NAME.py")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import bench/NAME.py and call its main(argv)."""
    folder = bench_dir()
    if folder is None:
        print("codeflow bench: no bench/ folder; run it from a source checkout", file=sys.stderr)
        return 2
    script = folder / f"{args.name}.py"
    names = sorted(p.stem for p in folder.glob("*.py") if p.stem not in ("report", "__init__"))
    if not script.is_file() or args.name in ("report", "__init__"):
        print(f"codeflow bench: unknown benchmark {args.name!r}; have {', '.join(names)}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"bench_{args.name}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(args.rest) or 0)
