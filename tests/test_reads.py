"""The server reads only open documents and regular files inside a workspace root, never on the
event loop's thread (issue 11 §5): not /etc/passwd, not a FIFO, not /dev/zero."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_server import FaultServer
from lsprotocol import types

from codeflow.context.errors import UnreadableFileError
from codeflow.context.files import read_closed_file
from codeflow.context.walk import FileFilter
from lsp_session import inline_params, lsp_session



@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


def remote_options(fault: FaultServer) -> dict:
    return {"backend": "remote", "remote": {"url": fault.url, "model": fault.model, "retries": 0}}


def sent(fault: FaultServer) -> str:
    return "\n".join(str(r["body"]) for r in fault.requests)


async def test_an_unopened_file_outside_the_workspace_never_reaches_a_prompt(
    workspace: Path, fault: FaultServer, tmp_path: Path
) -> None:
    secret = tmp_path / "elsewhere" / "passwd.py"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (workspace / "linked.py").symlink_to(secret)
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        for uri in (secret.as_uri(), (workspace / "linked.py").as_uri(), "file:///etc/passwd"):
            result = await client.text_document_inline_completion_async(inline_params(uri, 0, 4))
            assert result is None or not result.items
        assert "root:x:0:0" not in sent(fault)
        assert [m for m in client.log_messages if "outside the workspace folders" in m.message]
        # A closed file inside the workspace is still served, from disk.
        result = await client.text_document_inline_completion_async(
            inline_params((workspace / "store.py").as_uri(), 8, 8))
        assert "result.append(double(item))" in sent(fault)


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
async def test_a_fifo_or_device_uri_gets_an_answer_and_the_server_keeps_serving(
    workspace: Path, fault: FaultServer, tmp_path: Path, kind: str
) -> None:
    if kind == "fifo":
        target = workspace / "m_pipe.py"
        os.mkfifo(target)
    else:
        target = workspace / "zero.py"
        target.symlink_to("/dev/zero")
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        hover = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=target.as_uri()),
                                  position=types.Position(line=0, character=0))
        assert await asyncio.wait_for(client.text_document_hover_async(hover), timeout=10) is None
        completion = client.text_document_inline_completion_async(inline_params(target.as_uri(), 0, 0))
        result = await asyncio.wait_for(completion, timeout=10)
        assert result is None or not result.items
        # Still serving: a real file completes.
        await asyncio.wait_for(client.text_document_inline_completion_async(
            inline_params((workspace / "store.py").as_uri(), 8, 8)), timeout=20)
        assert "result.append(double(item))" in sent(fault)


def test_read_closed_file_rules(tmp_path: Path) -> None:
    root = (tmp_path / "ws").resolve()
    (root / "private").mkdir(parents=True)
    (root / ".gitignore").write_text("private/\n")
    (root / "private" / "keys.py").write_text("KEY = 1\n")
    (root / "ok.py").write_text("x = 1\n")
    (root / "local_keys.py").symlink_to(root / "private" / "keys.py")
    (root / ".env").write_text("TOKEN=abc\n")
    (root / "big.py").write_text("x" * 2000)
    (root / "bin.py").write_bytes(b"\x00\x01")
    filters = [FileFilter(root, max_file_bytes=1000)]
    assert read_closed_file(root / "ok.py", filters, 1000) == "x = 1\n"
    cases = {
        root / "private" / "keys.py": "ignore or secret rules",
        root / "local_keys.py": "ignore or secret rules",  # the link's target decides
        root / ".env": "ignore or secret rules",
        root / "big.py": "over the 1000 limit",
        root / "bin.py": "looks binary",
        root / "missing.py": "cannot read",
        Path("/etc/passwd"): "outside the workspace",
    }
    for path, reason in cases.items():
        with pytest.raises(UnreadableFileError, match=reason):
            read_closed_file(path, filters, 1000)
