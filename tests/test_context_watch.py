"""The watcher keeps the index current: create, modify, delete and rename, within a bounded wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from codeflow.context.engine import ContextEngine, EngineConfig

WAIT_S = 5.0


def _until(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture
def engine(tmp_path: Path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "base.py").write_text("def base_fn():\n    pass\n")
    eng = ContextEngine([tmp_path / "ws"], EngineConfig(use_cache=False))
    progress: list[tuple[int, int]] = []
    eng.start(watch=True, on_progress=lambda done, total: progress.append((done, total)))
    assert eng.wait_ready(10)
    assert progress[-1] == (1, 1)
    yield eng
    eng.stop()


def _names(eng: ContextEngine, path: Path) -> set[str]:
    return {d.name for d in eng.definitions_in(path)}


def test_watcher_follows_create_modify_rename_delete(engine: ContextEngine, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    new = ws / "new_mod.py"
    new.write_text("def fresh():\n    pass\n")
    assert _until(lambda: "fresh" in _names(engine, new))
    new.write_text("def fresher():\n    pass\n")
    assert _until(lambda: _names(engine, new) == {"fresher"})
    moved = ws / "moved_mod.py"
    new.rename(moved)
    assert _until(lambda: "fresher" in _names(engine, moved) and str(new) not in engine.index)
    moved.unlink()
    assert _until(lambda: str(moved) not in engine.index)
    assert "base_fn" in _names(engine, ws / "base.py")


def test_watcher_follows_directories_and_ignores(engine: ContextEngine, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    pkg = ws / "pkg"
    pkg.mkdir()
    (pkg / "inner.py").write_text("class Inner:\n    pass\n")
    assert _until(lambda: "Inner" in _names(engine, pkg / "inner.py"))
    (ws / ".env.py").write_text("TOKEN = 'x'\n")
    (ws / "later.py").write_text("def later():\n    pass\n")
    assert _until(lambda: str(ws / "later.py") in engine.index)
    assert str(ws / ".env.py") not in engine.index
    renamed = ws / "pkg2"
    pkg.rename(renamed)
    assert _until(lambda: str(renamed / "inner.py") in engine.index and str(pkg / "inner.py") not in engine.index)
