"""End to end: what the VS Code run of issue 13 found on the server side: no second generation for
plain completion (bug 5), `codeflow/status` only for changes that last (bugs 6 and 7), and the
client's `workDoneToken` honoured by `workspace/executeCommand` (bug 9)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import client_capabilities

from lsp_session import lsp_session, open_doc
from test_actions import instruct_stats, run_command
from test_hover import TOTAL_DOC, cursor, hover_options



@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


async def jobs(client) -> tuple[int, int]:
    """Completion requests the server took on, and generations it started."""
    totals = (await client.protocol.send_request_async("codeflow/stats", {})).totals
    return totals.requests, totals.generations_started


def completion_params(uri: str, line: int, character: int, kind: types.CompletionTriggerKind) -> types.CompletionParams:
    return types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                                  position=types.Position(line=line, character=character),
                                  context=types.CompletionContext(trigger_kind=kind, trigger_character=" "))


async def test_typing_runs_one_generation_not_two(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    """VS Code sends textDocument/completion (quick suggestions) beside the inline request on every
    keystroke; a client with inline completion gets no second generation from it."""
    options = {"model": {"path": str(models_dir / "fim.gguf"), "chatPath": ""}, "completion": {"maxTokens": 8}}
    caps = client_capabilities("visual-studio-code")  # pytest-lsp's copy predates inline completion
    caps.text_document.inline_completion = types.InlineCompletionClientCapabilities()
    async with lsp_session(workspace, options, tmp_path, capabilities=caps) as client:
        uri = open_doc(client, workspace / "store.py")
        inline = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=5, character=8),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
        await client.text_document_inline_completion_async(inline)
        before = await jobs(client)
        assert before == (1, 1)
        typed = await client.text_document_completion_async(
            completion_params(uri, 5, 8, types.CompletionTriggerKind.TriggerCharacter))
        assert typed is not None and list(typed.items) == []
        assert await jobs(client) == before  # no request, no generation for it
        # Ctrl+Space is the user asking: it still gets a completion item.
        asked = await client.text_document_completion_async(completion_params(uri, 5, 8, types.CompletionTriggerKind.Invoked))
        assert asked is not None and (await jobs(client))[0] == 2


async def test_status_reports_lasting_states_of_the_completion_model(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        for character in range(4, 9):
            inline = types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=5, character=character),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))
            await client.text_document_inline_completion_async(inline)
        await (await run_command(client, "codeflow.explainFunction", cursor(uri, 4, 10)))
        await asyncio.sleep(0.3)  # a late status would arrive by now; none may
        states = [s["state"] for s in client.statuses]
        assert "generating" not in states, states  # five requests, no flicker (bug 6)
        assert states.count("ready") == 1, states
        # The chat model (the recorded backend) never appears as the status bar's model (bug 7).
        assert all(s["model"] != "recorded-chat" for s in client.statuses), client.statuses


async def test_explain_streams_on_the_clients_work_done_token(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        token = "vscode-explain-1"
        client.progress_reports[token] = []  # the client's own token: never created by the server
        params = types.ExecuteCommandParams(command="codeflow.explainFunction", arguments=[cursor(uri, 4, 10)],
                                            work_done_token=token)
        result = await client.workspace_execute_command_async(params)
        assert result["text"] == TOTAL_DOC.strip()
        reports = client.progress_reports[token]
        assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].title == "Explaining total"
        partial = [r.message for r in reports if isinstance(r, types.WorkDoneProgressReport)]
        assert partial and all(TOTAL_DOC.startswith(p) for p in partial)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        others = [t for t, vs in client.progress_reports.items() if vs and getattr(vs[0], "title", "") == "Explaining total"]
        assert others == [token]  # no second, server-created progress for the same job
        assert (await instruct_stats(client))["explain"]["cancelled"] is False
