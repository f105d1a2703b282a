"""Indexing on every core (issue 16 §3): worker processes give the same index as one process,
keep the file rules, fall back when they cannot run, stop with the engine and die with their
parent; and a context query answered while the index builds gets what the buffer imports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import wait
from pathlib import Path

import psutil
import pytest

from codeflow.context import cache, pool
from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.context import workspace as workspace_mod
from codeflow.context.workspace import Workspace

DATA = Path(__file__).parent / "data" / "context"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Every fixture project (all languages), plus files the rules keep out or skip."""
    root = tmp_path / "tree"
    for project in sorted(DATA.iterdir()):
        shutil.copytree(project, root / project.name)
    (root / ".gitignore").write_text("ignored/\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "hidden.py").write_text("def hidden():\n    pass\n")
    (root / "local_secrets.py").write_text("TOKEN = 'x'\n")
    (root / "huge.py").write_text("X = 1\n" * 400)  # over the 1,000-byte limit below
    (root / "binary.py").write_bytes(b"def f():\n\0\0\0")
    (root / "broken.py").write_text("def broken(:\n    return\nclass Ok:\n    pass\n")
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.py")
    return root


def _workspace(root: Path, workers: int) -> Workspace:
    return Workspace([root], (), ("local_secrets.py",), 1_000, None, workers=workers)


def _snapshot(ws: Workspace) -> dict[str, object]:
    """The index as lookups see it (dict and set orders do not matter to them)."""
    idx = ws.index
    names = {d.name for fi in idx.files.values() for d in fi.defs}
    return {
        "files": dict(idx.files),
        "skipped": dict(ws.skipped),
        "by_name": {n: {p: idx.defs_in(p, n) for p in idx.files_defining(n)} for n in names},
        "leaves": {n: set(idx.py_modules_named(n)) for n in names | {"models", "auth", "services"}},
        "dirs": {d: set(idx.in_dir(d)) for d in idx.dirs()},
    }


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> list[pool.ParsePool]:
    """Workers for any tree, a few files per request; records every pool started."""
    started: list[pool.ParsePool] = []
    real = pool.ParsePool

    def recording(*args: object, **kw: object) -> pool.ParsePool:
        p = real(*args, **kw)  # type: ignore[arg-type]
        started.append(p)
        return p

    monkeypatch.setattr(pool, "PARALLEL_MIN", 1)
    monkeypatch.setattr(pool, "CHUNK", 3)
    monkeypatch.setattr(pool, "ParsePool", recording)
    return started


def test_parallel_index_equals_serial(tree: Path, small_chunks: list[pool.ParsePool]) -> None:
    serial = _workspace(tree, workers=1)
    serial.index_all(save=False)
    assert small_chunks == []
    parallel = _workspace(tree, workers=2)
    parallel.index_all(save=False)
    assert len(small_chunks) == 1 and small_chunks[0].leftover == []
    assert _snapshot(parallel) == _snapshot(serial)
    indexed = {os.path.relpath(p, tree) for p in parallel.index.files}
    assert "pyproj/models.py" in indexed and "broken.py" in indexed
    assert not indexed & {"ignored/hidden.py", "local_secrets.py", "huge.py", "binary.py", "pipe.py"}
    assert {os.path.basename(p) for p in parallel.skipped} == {"huge.py", "binary.py"}


def test_workers_parse_while_the_walk_goes_on(tree: Path, small_chunks: list[pool.ParsePool],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    serial = _workspace(tree, workers=1)
    serial.index_all(save=False)
    real_walk, real_merge = workspace_mod.walk, Workspace._merge
    walked: list[Path] = []
    walked_at_merge: list[int] = []

    def slow_walk(flt: object) -> Iterator[Path]:
        for path in real_walk(flt):  # type: ignore[arg-type]
            if small_chunks and not walked_at_merge:
                # Past the first chunks: hold the walk until a worker has answered one.
                assert wait(small_chunks[0]._conns, timeout=30)
            walked.append(path)
            yield path

    def merge(self: Workspace, parsed: pool.Parsed) -> None:
        walked_at_merge.append(len(walked))
        real_merge(self, parsed)

    monkeypatch.setattr(workspace_mod, "walk", slow_walk)
    monkeypatch.setattr(Workspace, "_merge", merge)
    ws = _workspace(tree, workers=2)
    ws.index_all(save=False)
    assert walked_at_merge[0] < len(walked)  # a chunk merged before the walk ended
    assert _snapshot(ws) == _snapshot(serial)


def test_small_tree_stays_in_process(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kw: object) -> None:
        raise AssertionError("no workers below PARALLEL_MIN")

    monkeypatch.setattr(pool, "ParsePool", refuse)
    ws = _workspace(tree, workers=4)
    ws.index_all(save=False)
    assert "pyproj/models.py" in {os.path.relpath(p, tree) for p in ws.index.files}


@pytest.mark.parametrize("command", [
    ("/nonexistent/python3",),                               # cannot start at all
    (sys.executable, "-c", "import sys; sys.exit(3)"),        # starts, dies before any answer
])
def test_workers_that_fail_fall_back_to_one_process(tree: Path, small_chunks: list[pool.ParsePool],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    command: tuple[str, ...]) -> None:
    serial = _workspace(tree, workers=1)
    serial.index_all(save=False)
    monkeypatch.setattr(pool, "WORKER_COMMAND", command)
    ws = _workspace(tree, workers=2)
    ws.index_all(save=False)
    assert _snapshot(ws) == _snapshot(serial)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_engine_stop_stops_the_workers(tree: Path, small_chunks: list[pool.ParsePool],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    merging = threading.Event()
    real = Workspace._merge

    def merge_then_hold(self: Workspace, parsed: pool.Parsed) -> None:
        real(self, parsed)
        merging.set()
        self.cancel.wait(10)  # hold the index mid-run until the engine stops

    monkeypatch.setattr(Workspace, "_merge", merge_then_hold)
    engine = ContextEngine([tree], EngineConfig(use_cache=False, index_workers=2))
    engine.start(watch=False)
    assert merging.wait(30)
    pids = small_chunks[0].pids
    assert len(pids) == 2 and not any(_gone(p) for p in pids)
    engine.stop()
    assert all(_gone(p) for p in pids)
    assert 0 < len(engine.index) < 20  # stopped early: a full index has more files


_ORPHAN_SCRIPT = """
import sys, threading
from pathlib import Path
from codeflow.context import cache, pool
from codeflow.context.workspace import Workspace
pool.PARALLEL_MIN, pool.CHUNK = 1, 2
def hold(self, parsed):
    print(" ".join(map(str, pids)), flush=True)
    threading.Event().wait()
real = pool.ParsePool
pids = []
def keep(*a, **k):
    p = real(*a, **k)
    pids.extend(p.pids)
    return p
pool.ParsePool = keep
Workspace._merge = hold
Workspace([Path(sys.argv[1])], (), (), 1_000_000, None, workers=2).index_all(save=False)
"""


def test_workers_die_with_their_parent(tree: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, str(tree)], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids)


# -- Answers while the index builds ---------------------------------------------------------------

DEEP = Path("zz_last", "core", "engine", "plugins", "probe", "deep_mod.py")
BUFFER = ("from zz_last.core.engine.plugins.probe.deep_mod import deep_target\n"
          "from local_secrets import TOKEN\n\n\ndef main():\n    return deep_target(\n")


@pytest.fixture
def big_tree(tmp_path: Path) -> Path:
    """3,000 small modules, then (last in walk order) a module deep in the tree and a secret."""
    root = tmp_path / "big"
    for i in range(3000):
        pkg = root / f"pkg{i // 100:03d}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"mod{i}.py").write_text(f"def func_{i}(x):\n    return x + {i}\n\n\nclass C{i}:\n    pass\n")
    (root / DEEP).parent.mkdir(parents=True)
    for d in (root / DEEP).parents:
        if d == root:
            break
        (d / "__init__.py").write_text("")
    (root / DEEP).write_text("def deep_target(x: int) -> int:\n    return x * 7\n")
    (root / "local_secrets.py").write_text("TOKEN = 'hunter2'\n")
    (root / "app.py").write_text(BUFFER)
    return root


def test_query_while_indexing_gets_the_buffers_imports(big_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    holding = threading.Event()
    release = threading.Event()
    real = Workspace._merge

    def merge_then_hold(self: Workspace, parsed: pool.Parsed) -> None:
        real(self, parsed)
        holding.set()
        release.wait(60)

    monkeypatch.setattr(Workspace, "_merge", merge_then_hold)
    config = EngineConfig(use_cache=False, index_workers=2, secret_globs=("local_secrets.py",))
    engine = ContextEngine([big_tree], config)
    engine.start(watch=False)
    try:
        assert holding.wait(60)
        deep = str(big_tree / DEEP)
        assert deep not in engine.index
        lines = BUFFER.split("\n")
        packed = engine.query(big_tree / "app.py", BUFFER, len(lines) - 2, len(lines[-2]), 2048)
        assert not engine.wait_ready(0)  # answered while the index is still building
        assert any(s.path == DEEP.as_posix() and "def deep_target" in s.text for s in packed.snippets)
        assert deep in engine.index and len(engine.index) < 1000
        assert str(big_tree / "local_secrets.py") not in engine.index  # the rules still hold
    finally:
        release.set()
        assert engine.wait_ready(120)
        engine.stop()
    assert len(engine.index) == 3000 + 1 + 5 + 1  # modules, deep module, its packages, app.py


def test_warm_start_from_the_per_entry_cache_equals_the_cold_index(tree: Path, tmp_path: Path) -> None:
    cold = Workspace([tree], (), ("local_secrets.py",), 1_000, tmp_path / "cache", workers=1)
    cold.index_all()
    cached = cache.load(tmp_path / "cache", cold.roots[0])
    assert isinstance(cached, cache.Cached) and set(cached) == set(cold.index.files)
    warm = Workspace([tree], (), ("local_secrets.py",), 1_000, tmp_path / "cache", workers=1)
    warm.index_all(save=False)
    assert _snapshot(warm) | {"skipped": {}} == _snapshot(cold) | {"skipped": {}}
