"""Workspace churn that overflows the kernel's inotify queue: shared by
tests/test_workspace_faults.py and `codeflow bench soak` (bench/soak.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codeflow.context.engine import ContextEngine

OLD_FILES = 300
# Run by a child process, so that the kernel's inotify queue (16,384 events by default) fills while
# the indexing process is kept from reading it: 300 new classes, 150 deleted files and 20,000 more events.
CHURN = """
import os, sys
root = sys.argv[1]
for i in range(300):
    with open(os.path.join(root, f"new_{i}.py"), "w") as fh:
        fh.write(f"class Fresh{i}:\\n    pass\\n")
for i in range(150):
    os.unlink(os.path.join(root, f"old_{i}.py"))
for i in range(8000):  # in a watched directory: a new one is not watched before it is seen
    path = os.path.join(root, f"n{i}.txt")
    with open(path, "w") as fh:
        fh.write("x")
    os.unlink(path)
"""
OPERATIONS = 300 + 150 + 8000 * 2
# What the index holds once it has seen all of CHURN over OLD_FILES old files.
SETTLED = frozenset({f"Fresh{i}" for i in range(300)} | {f"Old{i}" for i in range(150, OLD_FILES)})


def write_old_files(root: Path, n: int = OLD_FILES) -> None:
    """`old_<i>.py` files, each defining `class Old<i>`."""
    for i in range(n):
        (root / f"old_{i}.py").write_text(f"class Old{i}:\n    pass\n")


def _gil_hold_count(seconds: float = 3.0) -> int:
    """How many integers `sum(range(n))` adds in about `seconds` (one C call: the GIL stays held)."""
    start = time.perf_counter()
    sum(range(2_000_000))
    return int(2_000_000 * seconds / max(time.perf_counter() - start, 1e-4))


def churn_while_starved(root: Path, hold: int | None = None) -> int:
    """Run CHURN over `root` in a child while this process holds the GIL, `hold` integers summed
    per call (default: about 3 s' worth); returns the child's exit status."""
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(root)])
    # Hold the GIL with one long C call while the child works: watchdog's reader thread cannot
    # drain the inotify queue, so the kernel drops events, as a busy server did.
    while churn.poll() is None:
        sum(range(hold or _gil_hold_count()))
    return churn.wait()


def index_names(engine: ContextEngine) -> set[str]:
    """The names of every definition the engine's index holds now."""
    with engine.index.lock:
        return {d.name for fi in engine.index.files.values() for d in fi.defs}


def settle(engine: ContextEngine, deadline: float) -> set[str]:
    """The index's names once they are SETTLED, or at `deadline` (time.monotonic())."""
    while (names := index_names(engine)) != SETTLED and time.monotonic() < deadline:
        time.sleep(0.1)
    return names
