"""End to end: code actions listed at once, run by resolve or by `codeflow.runAction`, applied safely."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from codeflow.context.edits import error_count
from lsp_session import lsp_session, open_doc, wait_for_message

LOOP_ANSWER = "def total(self, items):\n    return [double(item) for item in items]\n```\nDone."
FIX_ANSWER = ("def total(self, items):\n    result = []\n    for item in items:\n"
              "        result.append(double(item))\n    return list(result)\n```")
BROKEN_ANSWER = "def total(self, items:\n    return [\n```"
SLOW_ANSWER = "def total(self, items):\n" + "    # thinking about it\n" * 200 + "    return items\n```"


def recording(tmp_path: Path, **extra: Any) -> str:
    """A recorded-answers file for the chat model; returns the `model.chatPath` value."""
    data = {
        "name": "recorded-chat",
        "log": str(tmp_path / "prompts.jsonl"),
        "answers": [
            {"match": "Rewrite the for-loops", "text": LOOP_ANSWER},
            {"match": "Fix this problem", "text": FIX_ANSWER},
            {"match": "Add a concise docstring", "text": BROKEN_ANSWER},
            {"match": "Simplify and modernise", "text": SLOW_ANSWER, "delay_ms": 40},
        ],
        **extra,
    }
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(data))
    return f"recorded:{path}"


def prompts(tmp_path: Path) -> list[str]:
    """Every prompt the recorded backend received."""
    log = tmp_path / "prompts.jsonl"
    return [json.loads(line)["text"] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


def options(models_dir: Path, chat_path: str) -> dict:
    return {"model": {"path": str(models_dir / "base.gguf"), "chatPath": chat_path}}


@contextlib.asynccontextmanager
async def store_session(workspace: Path, models_dir: Path, tmp_path: Path, chat_path: str,
                        capabilities: types.ClientCapabilities | None = None
                        ) -> AsyncIterator[tuple[LanguageClient, str]]:
    """A session with the chat model `chat_path` and store.py open; yields the client and its URI."""
    async with lsp_session(workspace, options(models_dir, chat_path), tmp_path, capabilities=capabilities) as client:
        yield client, open_doc(client, workspace / "store.py")


def selection(uri: str, start: tuple[int, int], end: tuple[int, int],
              diagnostics: list[types.Diagnostic] | None = None) -> types.CodeActionParams:
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=types.Range(start=types.Position(*start), end=types.Position(*end)),
        context=types.CodeActionContext(diagnostics=diagnostics or []),
    )


def diagnostic(line: int, message: str) -> types.Diagnostic:
    return types.Diagnostic(
        range=types.Range(start=types.Position(line, 8), end=types.Position(line, 14)),
        message=message, source="pyflakes",
    )


def apply(text: str, edit: types.WorkspaceEdit) -> str:
    """Apply a WorkspaceEdit's text edits as an editor would (UTF-16 columns are ASCII here)."""
    (change,) = edit.document_changes
    lines = text.split("\n")
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    out = text
    for e in sorted(change.edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start = offsets[e.range.start.line] + e.range.start.character
        end = offsets[e.range.end.line] + e.range.end.character if e.range.end.line < len(lines) else len(text)
        out = out[:start] + e.new_text + out[end:]
    return out


def record_apply_edits(client) -> list[types.ApplyWorkspaceEditParams]:
    """Make the test client accept `workspace/applyEdit` and remember each one."""
    received: list[types.ApplyWorkspaceEditParams] = []

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        received.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    return received


async def run_command(client, name: str, *args: Any, msg_id: str | None = None) -> asyncio.Future:
    params = types.ExecuteCommandParams(command=name, arguments=list(args))
    return asyncio.wrap_future(client.protocol.send_request(types.WORKSPACE_EXECUTE_COMMAND, params,
                                                            msg_id=msg_id or str(uuid.uuid4())))


async def instruct_stats(client) -> dict[str, dict[str, Any]]:
    """The server's timings of its last action and explanation (pygls hands back namedtuples)."""
    raw = await client.protocol.send_request_async("codeflow/instructStats", {})
    return {"action": raw.action._asdict(), "explain": raw.explain._asdict()}


def messages(client, text: str) -> list[str]:
    return [m.message for m in client.messages if text in m.message]


def change(client: LanguageClient, uri: str, version: int, line: int, text: str, end_col: int = 0) -> None:
    """Send one incremental change: `text` replaces (line, 0)-(line, end_col)."""
    span = types.Range(start=types.Position(line, 0), end=types.Position(line, end_col))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=span, text=text)],
    ))


async def listed_simplify(client: LanguageClient, uri: str) -> types.CodeAction:
    """The "Simplify" action listed at the cursor in `Store.total`."""
    actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
    return next(a for a in actions if a.title == "Simplify (AI)")


async def wait_ended(client, kind: str = "action", timeout: float = 10.0) -> dict[str, Any]:
    """The last action's (or, with kind="explain", explanation's) stats once its generation has
    ended (its total time is set)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (job := (await instruct_stats(client))[kind])["total_s"] < 0:
        assert loop.time() < deadline, f"the {kind} never ended: {job}"
        await asyncio.sleep(0.05)
    return job


async def wait_for_report(client, timeout: float = 10.0) -> tuple[str, types.WorkDoneProgressReport]:
    """The first `$/progress` report with text, and its token (not the server's indexing progress)."""
    for _ in range(int(timeout / 0.02)):
        for token, values in client.progress_reports.items():
            if values and getattr(values[0], "title", "") == "Indexing workspace":
                continue
            for value in values:
                if isinstance(value, types.WorkDoneProgressReport) and value.message:
                    return str(token), value
        await asyncio.sleep(0.02)
    raise AssertionError("no $/progress report with text arrived")


async def start_simplify(client: LanguageClient, uri: str, msg_id: str | None = None
                         ) -> tuple[types.CodeAction, asyncio.Future, str]:
    """Run the listed "Simplify" by `codeflow.runAction` until the model streams; returns the
    action, the pending command and its progress token."""
    simplify = await listed_simplify(client, uri)
    pending = await run_command(client, "codeflow.runAction", simplify.data, msg_id=msg_id)
    token, _ = await wait_for_report(client)
    return simplify, pending, token


async def test_actions_listed_for_diagnostic_and_selection(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        diag = diagnostic(7, "undefined name 'doubel'")
        actions = await client.text_document_code_action_async(selection(uri, (6, 0), (8, 0), [diag]))
        kinds = {a.kind for a in actions}
        titles = [a.title for a in actions]
        assert {"quickfix", "refactor.extract", "refactor.rewrite"} <= kinds
        fix = next(a for a in actions if a.kind == "quickfix")
        assert "doubel" in fix.title and fix.data["diagnostic"]["message"] == diag.message
        assert fix.data["startLine"] == 4 and fix.data["endLine"] == 8  # the function around it
        assert "Convert loop to comprehension (AI)" in titles
        # VS Code resolves: the actions carry data, not a command, and nothing ran the model.
        assert all(a.edit is None and a.command is None for a in actions)
        at_cursor = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        assert {a.kind for a in at_cursor} == {"refactor.rewrite"}
        assert all(a.data["startLine"] == 4 and a.data["endLine"] == 8 for a in at_cursor)
        only = selection(uri, (6, 0), (8, 0), [diag])
        only.context.only = [types.CodeActionKind.QuickFix]
        assert [a.kind for a in await client.text_document_code_action_async(only)] == ["quickfix"]
        assert prompts(tmp_path) == []


async def test_resolve_produces_an_edit_for_the_document_version(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    text = (workspace / "store.py").read_text()
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        loop = next(a for a in actions if a.title.startswith("Convert loop"))
        resolved = await client.code_action_resolve_async(loop)
        assert resolved.edit is not None
        (change,) = resolved.edit.document_changes
        assert change.text_document.version == 1 and change.text_document.uri == uri
        result = apply(text, resolved.edit)
        assert "        return [double(item) for item in items]\n" in result
        assert result.startswith(text[: text.index("    def total")])  # lines before are untouched
        assert result.endswith(text[text.index("\n    def name"):])
        assert error_count("python", result) == 0
        assert all(e.range.start.line >= 5 for e in change.edits)  # minimal: `def total` is kept
        (prompt,) = prompts(tmp_path)
        assert prompt.startswith("<|im_start|>system\n") and "<|im_start|>assistant\n```python\n" in prompt
        assert "result.append(double(item))" in prompt


async def test_quick_fix_command_streams_progress_and_applies(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path, delay_ms=5)) as (client, uri):
        received = record_apply_edits(client)
        diag = diagnostic(8, "returns a list that callers mutate")
        actions = await client.text_document_code_action_async(selection(uri, (8, 8), (8, 8), [diag]))
        fix = next(a for a in actions if a.kind == "quickfix")
        result = await (await run_command(client, "codeflow.runAction", fix.data))
        assert result["applied"] is True and "return list(result)" in result["text"]
        (params,) = received
        after = apply((workspace / "store.py").read_text(), params.edit)
        assert "        return list(result)\n" in after and error_count("python", after) == 0
        (prompt,) = prompts(tmp_path)
        assert "returns a list that callers mutate" in prompt and "pyflakes" in prompt
        assert "line 9, column 9" in prompt
        (reports,) = [vs for vs in client.progress_reports.values() if vs and vs[0].title not in ("Loading model", "Indexing workspace")]
        assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].cancellable
        assert any(isinstance(v, types.WorkDoneProgressReport) and "def total" in (v.message or "") for v in reports)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_an_answer_that_breaks_the_syntax_is_rejected(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        document = next(a for a in actions if a.title.startswith("Add docstring"))
        resolved = await client.code_action_resolve_async(document)
        assert resolved.edit is None
        await wait_for_message(client, "does not parse")


async def test_a_document_edited_during_generation_is_not_overwritten(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        received = record_apply_edits(client)
        simplify, pending, token = await start_simplify(client, uri)
        change(client, uri, 2, 0, "# mine\n")
        client.protocol.notify(types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token))
        result = await asyncio.wait_for(pending, timeout=15)
        assert result["applied"] is False and received == []
        # The user's edit is the only change the server knows of: the function moved down a line.
        again = await client.text_document_code_action_async(selection(uri, (6, 3), (6, 3)))
        moved = next(a for a in again if a.title.startswith("Simplify"))
        assert moved.data["startLine"] == simplify.data["startLine"] + 1
        assert moved.data["version"] == 2
    # Without cancelling: the model finishes after the user edited the function, and the result is
    # dropped (an edit above it moves the result instead: tests/test_actions_moved.py).
    fast = {"name": "recorded-chat", "answers": [{"match": "Simplify", "text": LOOP_ANSWER, "delay_ms": 60}]}
    (tmp_path / "fast.json").write_text(json.dumps(fast))
    async with store_session(workspace, models_dir, tmp_path, f"recorded:{tmp_path / 'fast.json'}") as (client, uri):
        received = record_apply_edits(client)
        _, pending, _ = await start_simplify(client, uri)
        change(client, uri, 2, 5, "        # mine\n")
        result = await asyncio.wait_for(pending, timeout=15)
        assert result["applied"] is False and received == []
        await wait_for_message(client, "document changed while the model was answering")


@pytest.mark.parametrize("how", ["progress", "request"])
async def test_cancellation_stops_generation(workspace: Path, models_dir: Path, tmp_path: Path, how: str) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        received = record_apply_edits(client)
        msg_id = str(uuid.uuid4())
        _, pending, token = await start_simplify(client, uri, msg_id=msg_id)
        if how == "progress":
            client.protocol.notify(types.WINDOW_WORK_DONE_PROGRESS_CANCEL,
                                   types.WorkDoneProgressCancelParams(token=token))
            result = await asyncio.wait_for(pending, timeout=10)
            assert result["applied"] is False
        else:
            client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
            with pytest.raises(Exception):
                await asyncio.wait_for(pending, timeout=10)
        first = await wait_ended(client)
        assert first["cancelled"] is True
        assert 0 < first["tokens"] < 400 and first["tokens_after_cancel"] <= 1
        assert (await instruct_stats(client))["action"] == first and received == []
        assert isinstance(client.progress_reports[token][-1], types.WorkDoneProgressEnd)


async def test_bad_requests_get_clean_errors_and_the_server_keeps_serving(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with store_session(workspace, models_dir, tmp_path, recording(tmp_path)) as (client, uri):
        assert not await client.text_document_code_action_async(selection(uri, (500, 0), (501, 0)))
        missing = (workspace / "nope.py").as_uri()
        assert not await client.text_document_code_action_async(selection(missing, (0, 0), (0, 0)))
        assert not await client.text_document_code_action_async(selection(uri, (1, 0), (1, 0)))  # no function
        assert not await client.text_document_code_action_async(selection(uri, (5, 0), (2, 0)))  # reversed
        bogus = types.CodeAction(title="x", data={"uri": uri, "action": "teleport", "startLine": 0, "endLine": 0})
        assert (await client.code_action_resolve_async(bogus)).edit is None
        assert (await client.code_action_resolve_async(types.CodeAction(title="y", data={"nope": 1}))).edit is None
        past = {"uri": uri, "action": "simplify", "startLine": 90, "endLine": 95}
        assert (await client.code_action_resolve_async(types.CodeAction(title="z", data=past))).edit is None
        await wait_for_message(client, "outside the document")
        await wait_for_message(client, "teleport")
        assert len(await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))) >= 3


@pytest.mark.parametrize(("chat_path", "expected"), [("", "no chat model is set"), ("/nope/chat.gguf", "nope")])
async def test_a_missing_or_unset_chat_model_is_a_clear_error(
    workspace: Path, models_dir: Path, tmp_path: Path, chat_path: str, expected: str
) -> None:
    async with store_session(workspace, models_dir, tmp_path, chat_path) as (client, uri):
        actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        assert actions  # listing never needs the model
        resolved = await client.code_action_resolve_async(actions[0])
        assert resolved.edit is None
        await wait_for_message(client, expected)
        assert await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))


async def test_real_instruct_model_resolves_an_action_end_to_end(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    from codeflow.quant.models import default_chat_model_path

    text = (workspace / "store.py").read_text()
    async with store_session(workspace, models_dir, tmp_path, str(default_chat_model_path())) as (client, uri):
        actions = await client.text_document_code_action_async(selection(uri, (11, 8), (11, 8)))
        document = next(a for a in actions if a.title.startswith("Add docstring"))
        assert document.data["startLine"] == 10 and document.data["endLine"] == 11
        resolved = await asyncio.wait_for(client.code_action_resolve_async(document), timeout=240)
        stats = (await instruct_stats(client))["action"]
        assert stats["tokens"] > 0 and stats["first_token_s"] > 0 and not stats["cancelled"]
        if resolved.edit is None:  # a 135M model may answer badly; then the user is told why
            await wait_for_message(client, "nothing was changed")
            return
        (change,) = resolved.edit.document_changes
        assert change.text_document.version == 1
        assert all(10 <= e.range.start.line and e.range.end.line <= 12 for e in change.edits)
        result = apply(text, resolved.edit)
        assert error_count("python", result) == 0
        assert result.startswith(text[: text.index("    def name")])
        assert result.endswith(text[text.index("\n\ndef main"):])
