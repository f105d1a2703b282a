"""Context recall on real projects: blank out a line, ask for context at its start, and check that
the cross-file definitions the line uses (judged by jedi) are in the packed snippets.

Compared with a Copilot-style baseline: 60-line windows of the project's other files, ranked by
Jaccard similarity with the 60 lines before the cursor, packed best first into the same budget.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.context.lexical import jaccard, tokens
from codeflow.context.pack import estimate_tokens, render_snippet

# Not installed in the venv: jedi must resolve them to the unpacked sources, not site-packages.
PROJECTS = ("flask==3.0.3", "marshmallow==3.21.3", "werkzeug==3.0.3", "wtforms==3.1.2", "arrow==1.3.0",
            "sqlparse==0.5.0")
BUDGETS = (2048, 4096, 8192)
_IDENT = re.compile(r"[A-Za-z_]\w*")
_SKIP_DIRS = ("tests", "test", "docs", "examples", "artwork")


def fetch(spec: str, dest: Path) -> Path:
    """Download and unpack an sdist (cached in `dest`); returns the project root."""
    name, version = spec.split("==")
    root = next((p for p in dest.glob(f"{name}-{version}") if p.is_dir()), None)
    if root is not None:
        return root
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    spec, "-d", str(dest), "-q"], check=True)
    archive = next(dest.glob(f"{name}-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest / f"{name}-{version}"


def sources(root: Path) -> list[Path]:
    """The project's Python sources, tests and docs left out."""
    return sorted(p for p in root.rglob("*.py") if not set(p.relative_to(root).parts[:-1]) & set(_SKIP_DIRS))


def judge(jedi_project: object, path: Path, text: str, line: int, root: Path) -> set[tuple[str, int, str]]:
    """(relative path, 1-based line, name) of the cross-file project definitions a line uses."""
    import jedi

    script = jedi.Script(text, path=path, project=jedi_project)
    src = text.split("\n")[line]
    out: set[tuple[str, int, str]] = set()
    for m in _IDENT.finditer(src):
        try:
            defs = script.goto(line + 1, m.start(), follow_imports=True)
        except Exception:  # jedi raises on odd code; the judge then has no opinion on that name
            continue
        for d in defs:
            mp = d.module_path
            if mp is None or d.line is None or d.type == "module":
                continue
            mp = Path(mp)
            if mp == path or root not in mp.parents:
                continue
            out.add((mp.relative_to(root).as_posix(), d.line, d.name))
    return out


def sample(root: Path, files: list[Path], n: int, rng: random.Random) -> list[tuple[Path, int, set]]:
    """Up to `n` (file, 0-based line, targets) with at least one cross-file target."""
    import jedi

    project = jedi.Project(root, added_sys_path=[str(root / "src")] if (root / "src").is_dir() else [])
    cands = []
    for f in files:
        lines = f.read_text("utf-8", "replace").split("\n")
        cands += [(f, i) for i, s in enumerate(lines)
                  if s.strip() and not s.lstrip().startswith(("#", "import ", "from ", '"', "'"))]
    rng.shuffle(cands)
    out = []
    # Bounded: jedi takes a while per line, and some lines use nothing from other files.
    for f, i in cands[:n * 10]:
        targets = judge(project, f, f.read_text("utf-8", "replace"), i, root)
        if targets:
            out.append((f, i, targets))
            if len(out) >= n:
                break
    return out


def _hit(snips: list[tuple[str, int, int, str]], target: tuple[str, int, str]) -> bool:
    path, line, name = target
    return any(p == path and a <= line <= b and name in text for p, a, b, text in snips)


class Baseline:
    """Copilot-style: Jaccard-ranked 60-line windows of every other project file."""

    def __init__(self, root: Path, files: list[Path]) -> None:
        self.windows: list[tuple[Path, int, int, str, frozenset[str]]] = []
        for f in files:
            lines = f.read_text("utf-8", "replace").split("\n")
            for start in range(0, max(1, len(lines)), 30):
                text = "\n".join(lines[start:start + 60])
                self.windows.append((f, start + 1, min(len(lines), start + 60), text, tokens(text)))
                if start + 60 >= len(lines):
                    break
        self.root = root

    def pack(self, path: Path, prefix: list[str], budget: int) -> list[tuple[str, int, int, str]]:
        query = tokens("\n".join(prefix[-60:]))
        ranked = sorted((w for w in self.windows if w[0] != path), key=lambda w: -jaccard(query, w[4]))
        out, used = [], 0
        for f, a, b, text, _ in ranked:
            rel = f.relative_to(self.root).as_posix()
            cost = estimate_tokens(render_snippet(rel, text, "#", None))
            if used + cost <= budget:
                out.append((rel, a, b, text))
                used += cost
        return out


def run_project(spec: str, dest: Path, n: int, seed: int) -> dict:
    """Recall of the engine and of the baseline at each budget on one project."""
    root = fetch(spec, dest).resolve()
    files = sources(root)
    t0 = time.perf_counter()
    samples = sample(root, files, n, random.Random(seed))
    judge_s = time.perf_counter() - t0
    engine = ContextEngine([root], EngineConfig(use_cache=False))
    engine.index_now()
    base = Baseline(root, files)
    hits = {b: 0 for b in BUDGETS}
    base_hits = {b: 0 for b in BUDGETS}
    total = 0
    for path, line, targets in samples:
        lines = path.read_text("utf-8", "replace").split("\n")
        indent = lines[line][:len(lines[line]) - len(lines[line].lstrip())]
        lines[line] = indent
        text = "\n".join(lines)
        total += len(targets)
        for b in BUDGETS:
            packed = engine.query(path, text, line, len(indent), b)
            snips = [(s.path, s.start_line, s.end_line, s.text) for s in packed.snippets]
            hits[b] += sum(_hit(snips, t) for t in targets)
            base_snips = base.pack(path, lines[:line], b)
            base_hits[b] += sum(_hit(base_snips, t) for t in targets)
        engine.drop_buffer(path)
    return {"project": spec, "files": len(files), "lines": len(samples), "targets": total,
            "judge_seconds": round(judge_s, 1),
            "recall": {str(b): round(hits[b] / max(1, total), 3) for b in BUDGETS},
            "baseline_recall": {str(b): round(base_hits[b] / max(1, total), 3) for b in BUDGETS},
            "_hits": hits, "_base_hits": base_hits}
