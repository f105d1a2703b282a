"""Shared output of the benchmarks: `bench/results/NAME.json` and a section of bench/README.md."""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
HEADER = "# Codeflow benchmarks\n\nEach section is written by `codeflow bench NAME`; the JSON is in `results/`.\n"


def machine() -> dict[str, Any]:
    """Where a figure was measured: absolute numbers only count on a GPU (see the README)."""
    import os

    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=BENCH, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit or "unknown (not a git checkout)",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def write(name: str, data: dict[str, Any], markdown: str) -> Path:
    """Save the JSON and replace this benchmark's section of bench/README.md."""
    out = BENCH / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    readme = BENCH / "README.md"
    text = readme.read_text() if readme.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    readme.write_text(text)
    return out


def table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
