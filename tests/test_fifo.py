"""A FIFO in the workspace (issue 12): indexing skips it instead of blocking on its open()."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeflow.context.errors import UnreadableFileError
from codeflow.context.walk import FileFilter, read_source, walk
from codeflow.context.workspace import Workspace, walk_under
from lsp_session import lsp_session, wait_indexed

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@contextlib.contextmanager
def released(fifo: Path) -> Iterator[None]:
    """After the test, give a reader stuck in open() a writer, so a failing test cannot hang."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    """`a_first.py`, the FIFO `m_pipe.py`, then `z_last.py` (walked in name order)."""
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "a_first.py").write_text("def first():\n    return 1\n")
    os.mkfifo(root / "m_pipe.py")
    os.mkfifo(root / "pkg" / "n_pipe.py")
    (root / "z_last.py").write_text("class LastOne:\n    pass\n")
    with released(root / "m_pipe.py"), released(root / "pkg" / "n_pipe.py"):
        yield root


def test_walk_and_walk_under_skip_fifos(workspace: Path) -> None:
    flt = FileFilter(workspace)
    names = {p.name for p in walk(flt)}
    assert names == {"a_first.py", "z_last.py"}
    assert walk_under(flt, workspace / "pkg") == []


def test_read_source_refuses_a_fifo_without_blocking(workspace: Path) -> None:
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_source(workspace / "m_pipe.py", 1_000_000)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the asserting thread
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5.0)
    assert not reader.is_alive(), "read_source blocked on the FIFO"
    assert isinstance(outcome[0], UnreadableFileError)
    assert "not a regular file" in str(outcome[0])


def test_index_completes_past_a_fifo(workspace: Path, tmp_path: Path) -> None:
    ws = Workspace([workspace], (), (), 1_000_000, tmp_path / "cache")
    progress: list[tuple[int, int]] = []
    indexer = threading.Thread(target=ws.index_all, args=(lambda d, t: progress.append((d, t)),), daemon=True)
    indexer.start()
    indexer.join(10.0)
    assert not indexer.is_alive(), "indexing blocked on the FIFO"
    root = workspace.resolve()
    assert len(ws.index) == 2
    assert ws.index.get(str(root / "z_last.py")) is not None
    assert ws.index_file(str(root / "m_pipe.py")) is None
    assert "not a regular file" in ws.skipped[str(root / "m_pipe.py")]
    assert progress and progress[-1][0] == progress[-1][1]


async def test_server_indexing_ends_with_a_fifo_in_the_workspace(workspace: Path, tmp_path: Path) -> None:
    options = {"completion": {"enabled": False}}
    async with lsp_session(workspace, options, tmp_path) as client:
        assert await wait_indexed(client, timeout=10.0)
        ends = [r.message for values in client.progress_reports.values() for r in values
                if getattr(r, "kind", "") == "end" and "indexed" in (r.message or "")]
        assert ends == ["2 files indexed"]
