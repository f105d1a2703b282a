"""Cold indexing on every core against one process, RSS per 10k files, and the first completion
context served while the index is still building (issue 16 §3).

`python bench/latency_index.py [--files N] [--root DIR]` (or `codeflow bench latency_index`):
without --root a tree of N files is made by copying real Python source (the standard library and
this venv's site-packages) under distinct directory names, plus a module deep in the tree that an
open buffer imports. Each figure is measured in a fresh child process, so that one run's memory
and warm caches do not count in the next. Writes bench/results/latency_index.json and a section
of bench/README.md; `measure()` is what bench/latency.py calls."""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (bench/ is a folder of scripts, not a package)

from codeflow.context.walk import SKIP_DIRS  # noqa: E402

SECTION = "## Indexing latency"
GOAL_RATIO = 0.6
GOAL_RSS_MB = 100.0
# The open buffer and the module it imports, deep in the tree and last in walk order.
DEEP = Path("zz_app", "core", "engine", "plugins", "probe", "deep_target.py")
DEEP_SOURCE = "\n\ndef probe_target(x: int) -> int:\n    \"\"\"Found on demand.\"\"\"\n    return x * 7\n"
BUFFER = Path("aa_open_buffer.py")
BUFFER_SOURCE = ("from zz_app.core.engine.plugins.probe.deep_target import probe_target\n\n\n"
                 "def main() -> int:\n    return probe_target(\n")
_SKIP = {"test", "tests", "idlelib", "lib2to3", "ensurepip"}


def _sources(limit_bytes: int = 200_000) -> list[tuple[Path, Path]]:
    """(source root, relative path) of real Python files: the stdlib, then site-packages."""
    stdlib = Path(os.__file__).parent
    roots = [stdlib, *{Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()}]
    out: list[tuple[Path, Path]] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP and d not in SKIP_DIRS
                                 and not d.startswith(".") and not d.endswith(".egg-info"))
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if name.endswith(".py") and path.is_file() and path.stat().st_size <= limit_bytes:
                    out.append((root, path.relative_to(root)))
    return out


def make_tree(dest: Path, files: int) -> Path:
    """A tree of `files` Python files copied from real source (copy k in `c{k}/`), plus the deep
    module and the buffer that imports it."""
    sources = _sources()
    for i in range(max(0, files - 1)):
        root, rel = sources[i % len(sources)]
        target = dest / f"c{i // len(sources)}" / ("lib" if root.name == "site-packages" else root.name) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, target)
    (dest / DEEP).parent.mkdir(parents=True, exist_ok=True)
    (dest / DEEP).write_text(DEEP_SOURCE)
    (dest / BUFFER).write_text(BUFFER_SOURCE)
    return dest


def _rss() -> int:
    gc.collect()
    try:
        import psutil
    except ImportError:  # a machine given only the project's own wheels: Linux's own count
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return psutil.Process().memory_info().rss


def _child_index(root: Path, workers: int) -> dict[str, Any]:
    """One cold index (no cache) in this process: wall time and the parent's RSS growth."""
    from codeflow.context.extract import extract
    from codeflow.context.workspace import Workspace

    extract("warm.py", "python", b"def f():\n    pass\n")  # grammar loaded before the baseline
    ws = Workspace([root], (), (), 1_000_000, None, workers=workers)
    rss0 = _rss()
    t0, cpu0 = time.perf_counter(), time.process_time()
    ws.index_all(save=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    grown = _rss() - rss0
    workers_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"workers": workers, "files": len(ws.index), "wall_s": round(wall, 2),
            "parent_cpu_s": round(cpu, 2), "workers_cpu_s": round(workers_cpu.ru_utime + workers_cpu.ru_stime, 2),
            "rss_mb_per_10k_files": round(grown / 2**20 * 10_000 / max(1, len(ws.index)), 1)}


def _child_first_query(root: Path, workers: int) -> dict[str, Any]:
    """Start a background index and ask for context in the buffer at once."""
    from codeflow.context.engine import ContextEngine, EngineConfig

    engine = ContextEngine([root], EngineConfig(use_cache=False, index_workers=workers))
    text = BUFFER_SOURCE
    lines = text.split("\n")
    t0 = time.perf_counter()
    engine.start(watch=False)
    packed = engine.query(root / BUFFER, text, len(lines) - 2, len(lines[-2]), 2048)
    answered = time.perf_counter() - t0
    indexed_then = len(engine.index)
    building = not engine.wait_ready(0)
    served = any(s.path == DEEP.as_posix() for s in packed.snippets)
    engine.wait_ready()
    total = time.perf_counter() - t0
    engine.stop()
    return {"first_query_s": round(answered, 3), "index_still_building": building,
            "files_indexed_then": indexed_then, "cross_file_context_served": served,
            "index_done_s": round(total, 2)}


def _run_child(kind: str, root: Path, workers: int, timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--root", str(root),
                          "--workers", str(workers)], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench child {kind} failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(files: int = 10_000, root: Path | None = None, workers: int = 0,
            timeout: float = 1800) -> dict[str, Any]:
    """Cold index with all cores (workers=0) against one process on the same tree, the parent's
    RSS per 10k files, and when the first context query with open-buffer context was served."""
    from codeflow.context.pool import worker_count

    with tempfile.TemporaryDirectory(prefix="codeflow-latency-index-") as tmp:
        tree = root or make_tree(Path(tmp), files)
        serial = _run_child("index", tree, 1, timeout)
        parallel = _run_child("index", tree, workers, timeout)
        first = _run_child("query", tree, workers, timeout) if root is None else {
            "skipped": "--root given: the probe buffer and deep module exist only in the generated tree"}
    ratio = parallel["wall_s"] / max(1e-9, serial["wall_s"])
    return {
        "files": parallel["files"], "cores": worker_count(), "generated": root is None,
        "one_process": serial, "all_cores": parallel,
        "cold_ratio": round(ratio, 3), "cold_ratio_goal": GOAL_RATIO,
        "rss_mb_per_10k_files": parallel["rss_mb_per_10k_files"], "rss_goal_mb": GOAL_RSS_MB,
        "first_query": first,
        "goals_met": ratio <= GOAL_RATIO and parallel["rss_mb_per_10k_files"] <= GOAL_RSS_MB
        and first.get("cross_file_context_served", root is not None) is not False,
    }


def _markdown(r: dict[str, Any]) -> str:
    q = r["first_query"]
    rows = report.table(
        [("one process", r["one_process"]["wall_s"], r["one_process"]["rss_mb_per_10k_files"]),
         (f"all cores ({r['cores']})", r["all_cores"]["wall_s"], r["all_cores"]["rss_mb_per_10k_files"])],
        ("cold index", "wall s", "parent RSS MB per 10k files"))
    first = "not measured" if "skipped" in q else (
        f"answered after {q['first_query_s']} s with {q['files_indexed_then']} files indexed "
        f"(index still building: {q['index_still_building']}, done at {q['index_done_s']} s); "
        f"the imported deep module's definition served: **{q['cross_file_context_served']}**")
    return f"""{SECTION}

`python bench/latency_index.py --files {r['files']}`; raw figures in `results/latency_index.json`.
{r['files']} Python files, {r['cores']} cores.

{rows}

All cores / one process: **{r['cold_ratio']}** (goal ≤ {GOAL_RATIO}); parent RSS
**{r['rss_mb_per_10k_files']} MB** per 10k files (goal ≤ {GOAL_RSS_MB:g}).
First context query for an open buffer: {first}.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    ap = argparse.ArgumentParser(prog="bench/latency_index.py", description=__doc__)
    ap.add_argument("--files", type=int, default=10_000, help="files in the generated tree")
    ap.add_argument("--root", type=Path, help="index this tree instead of a generated one")
    ap.add_argument("--workers", type=int, default=0, help="parse workers (0: one per core)")
    ap.add_argument("--child", choices=("index", "query"), help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only; leave results/ and README alone")
    args = ap.parse_args(argv)
    if args.child:
        fn = _child_index if args.child == "index" else _child_first_query
        print(json.dumps(fn(args.root, args.workers)), flush=True)
        return 0
    if args.root is not None and not args.root.is_dir():
        ap.error(f"--root {args.root} is not a directory")
    result = measure(args.files, args.root, args.workers)
    print(json.dumps(result, indent=2), flush=True)
    if not args.no_write:
        report.write("latency_index", result, _markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
