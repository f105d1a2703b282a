"""Workspace faults (issue 12): lost file events, a corrupt index cache, an unwritable cache."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from codeflow.context import cache
from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.context.workspace import Workspace
from wire import WireServer
from workspace_churn import SETTLED, churn_while_starved, settle, write_old_files


def test_lost_file_events_are_recovered_by_a_rescan(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    write_old_files(root)
    engine = ContextEngine([root], EngineConfig(use_cache=False))
    engine.start(watch=True)
    try:
        assert engine.wait_ready(timeout=60)
        assert churn_while_starved(root) == 0
        deadline = time.monotonic() + 60
        names = settle(engine, deadline)
        assert engine._watcher is not None and engine._watcher.overflows >= 1, "no overflow was provoked"
        # The events that did arrive can settle the names before the rescan has finished.
        while engine.rescans < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.rescans >= 1
        names = settle(engine, deadline)
        assert names == SETTLED, (sorted(SETTLED - names)[:5], sorted(names - SETTLED)[:5])
    finally:
        engine.stop()


def test_rescan_compares_by_mtime_and_size(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    write_old_files(root, 20)
    ws = Workspace([root], (), (), 1_000_000, None)
    ws.index_all(save=False)
    assert ws.rescan() == 0  # nothing changed: nothing parsed again
    (root / "old_3.py").write_text("class Renamed:\n    pass\n")
    (root / "old_4.py").unlink()
    (root / "extra.py").write_text("def added():\n    pass\n")
    assert ws.rescan() == 3
    names = {d.name for fi in ws.index.files.values() for d in fi.defs}
    assert {"Renamed", "added"} <= names and not {"Old3", "Old4"} & names


def test_a_corrupt_index_cache_is_logged_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    write_old_files(root, 5)
    cache_dir = tmp_path / "cache"
    Workspace([root], (), (), 1_000_000, cache_dir).index_all()
    target = cache.cache_path(cache_dir, root.resolve())
    target.write_bytes(b"\x93garbage" + target.read_bytes()[:40])
    with caplog.at_level(logging.INFO, logger="codeflow.context.cache"):
        ws = Workspace([root], (), (), 1_000_000, cache_dir)
        ws.index_all()
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "corrupt" in warned[0] and str(target) in warned[0], warned
    assert len(ws.index.files) == 5
    assert cache.load(cache_dir, root.resolve()).keys() == ws.index.files.keys()  # rewritten


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def test_an_unwritable_cache_does_not_break_shutdown(models_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    write_old_files(root, 5)
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    srv = WireServer(tmp_path)
    try:
        srv.initialize(root, {"model": {"path": str(models_dir / "base.gguf")}})
        srv.wait_for(lambda m: "index cache could not be saved" in json.dumps(m), timeout=30)
        srv.wait_for(lambda ms: any(m.get("method") == "codeflow/status" and m["params"].get("state") == "ready"
                                    for m in ms), timeout=60)  # the model worker runs
        workers = _children(srv.proc.pid)
        (root / "more.py").write_text("class More:\n    pass\n")  # the index changed: a save is due
        answer = srv.call("bye", "shutdown", timeout=30)
        assert "result" in answer and "error" not in answer, answer
        assert not _children(srv.proc.pid) & workers  # the backends were closed
        srv.send({"jsonrpc": "2.0", "method": "exit"})
        assert srv.proc.wait(timeout=10) == 0
    finally:
        srv.close()
