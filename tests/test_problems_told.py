"""A feature that fails in the background is told to the user once (a message and the status's
`degraded` field), not only logged (issue 11 §6)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from codeflow.context import engine as engine_module
from codeflow.lsp_server.assistant.runtime import Runtime
from codeflow.lsp_server.settings import Settings
from lsp_session import lsp_session, open_doc, wait_for_status

DATA = Path(__file__).parent / "data" / "actions"


def told(client, text: str) -> list[str]:
    return [m.message for m in client.messages if text in m.message]


async def test_an_index_cache_that_cannot_be_written_is_told(tmp_path: Path, models_dir: Path) -> None:
    root = tmp_path / "ws"
    shutil.copytree(DATA, root)
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    options = {"model": {"path": str(models_dir / "base.gguf")}}
    async with lsp_session(root, options, tmp_path) as client:
        status = await wait_for_status(client, lambda s: "context" in s.get("degraded", {}))
        assert "index cache could not be saved" in status["degraded"]["context"]
        for _ in range(100):
            if told(client, "index cache could not be saved"):
                break
            await asyncio.sleep(0.05)
        assert len(told(client, "index cache could not be saved")) == 1, [m.message for m in client.messages]
        # Context still works from the index in memory.
        uri = open_doc(client, root / "store.py")
        shown = await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="codeflow.showContext", arguments=[{"uri": uri, "position": {"line": 7, "character": 12}}]))
        assert any(s["path"] == "helpers.py" for s in shown["snippets"]), shown


def collect(runtime: Runtime) -> list[tuple[str, str | None]]:
    seen: list[tuple[str, str | None]] = []
    runtime.on_problem = lambda feature, message: seen.append((feature, message))
    return seen


def test_an_indexing_failure_is_told_and_the_partial_index_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ws"
    shutil.copytree(DATA, root)
    real_index_file = engine_module.Workspace.index_file

    def failing(self, path: str, cached=None):  # noqa: ANN001, ANN202 - the method's own signature
        if path.endswith("store.py"):
            raise RuntimeError("tree-sitter blew up")
        return real_index_file(self, path, cached)

    monkeypatch.setattr(engine_module.Workspace, "index_file", failing)
    runtime = Runtime(Settings(), root)
    seen = collect(runtime)
    runtime.start_context([root], lambda done, total: None)
    assert runtime.engine is not None and runtime.engine.wait_ready(20)
    problems = [m for f, m in seen if f == "context"]
    assert problems and "indexing stopped after" in problems[0] and "tree-sitter blew up" in problems[0]
    runtime.close()


def test_a_context_engine_that_cannot_load_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "codeflow.context.engine", None)  # import raises ImportError
    runtime = Runtime(Settings(), tmp_path)
    seen = collect(runtime)
    runtime.start_context([tmp_path])
    assert runtime.engine is None
    assert seen and seen[0][0] == "context" and "cannot load" in (seen[0][1] or "")
    runtime.close()


def test_a_failed_buffer_update_is_told_and_its_recovery_too(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    runtime = Runtime(Settings(), tmp_path)
    seen = collect(runtime)
    runtime.start_context([tmp_path], watch=False)
    engine = runtime.engine
    real = engine.set_buffer
    engine.set_buffer = lambda path, text: (_ for _ in ()).throw(MemoryError("no room for the tree"))
    runtime.set_buffer(tmp_path / "a.py", "x = 2\n")
    runtime.settled_engine()
    assert seen and seen[-1][0] == "buffer" and "may be stale" in (seen[-1][1] or "")
    assert "MemoryError" in (seen[-1][1] or "")
    engine.set_buffer = real
    runtime.set_buffer(tmp_path / "a.py", "x = 3\n")
    runtime.settled_engine()
    assert seen[-1] == ("buffer", None)
    runtime.close()


def test_a_planner_failure_is_told_not_silently_cpu(tmp_path: Path, models_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import codeflow.quant.planner as planner

    def broken(*args: object, **kwargs: object) -> None:
        raise planner.PlanError("unknown architecture 'mystery'")

    monkeypatch.setattr(planner, "plan_local", broken)
    runtime = Runtime(Settings(), tmp_path)
    seen = collect(runtime)
    assert runtime._gpu_layers(models_dir / "base.gguf") == 0
    assert seen and seen[0][0] == "gpu"
    assert "GPU planner failed for base.gguf" in (seen[0][1] or "") and "running on the CPU" in (seen[0][1] or "")
