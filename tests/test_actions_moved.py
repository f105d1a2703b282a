"""End to end (issue 11 section 1): an AI edit never lands on lines that moved.

An action is listed at one document version and resolved (or run) after the user typed; the edit
must be made on the text as it is then, where the target function now is, or refused with a
message and no change. AI edits carry change annotations that ask the editor to confirm them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from lsp_session import SERVER, isolated_env, lsp_session, open_doc, wait_indexed
from test_actions import LOOP_ANSWER, apply, messages, options, record_apply_edits, run_command, selection

DATA = Path(__file__).parent / "data" / "actions"
TYPED = "# typed by the user\nout = 0\n\n"
# What "Simplify" makes of `Store.total` in tests/data/actions/store.py.
BODY = ("        result = []\n        for item in items:\n            result.append(double(item))\n"
        "        return result\n")
SIMPLE = "        return [double(item) for item in items]\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "store.py").write_text((DATA / "store.py").read_text())
    (root / "helpers.py").write_text((DATA / "helpers.py").read_text())
    return root


def simplify_answers(tmp_path: Path, delay_ms: float = 0) -> str:
    """A recording whose "Simplify" answer is the comprehension; returns `model.chatPath`."""
    data = {"name": "recorded-chat", "log": str(tmp_path / "prompts.jsonl"),
            "answers": [{"match": "Simplify and modernise", "text": LOOP_ANSWER, "delay_ms": delay_ms}]}
    path = tmp_path / "simplify.json"
    path.write_text(json.dumps(data))
    return f"recorded:{path}"


def change(client: LanguageClient, uri: str, version: int, line: int, text: str, end_col: int = 0) -> None:
    """Send one incremental change: `text` replaces (line, 0)-(line, end_col)."""
    span = types.Range(start=types.Position(line, 0), end=types.Position(line, end_col))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(range=span, text=text)],
    ))


async def listed_simplify(client: LanguageClient, uri: str) -> types.CodeAction:
    actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
    return next(a for a in actions if a.title == "Simplify (AI)")


async def wait_message(client: LanguageClient, text: str, timeout: float = 10.0) -> list[str]:
    """The messages holding `text`, once one arrived."""
    for _ in range(int(timeout / 0.02)):
        if found := messages(client, text):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no message with {text!r}: {[m.message for m in client.messages]}")


async def test_resolve_after_lines_were_inserted_above_edits_the_moved_function(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path)), tmp_path) as client:
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        assert action.data["version"] == 1 and action.data["startLine"] == 4
        change(client, uri, 2, 0, TYPED)
        resolved = await client.code_action_resolve_async(action)
        assert resolved.edit is not None, [m.message for m in client.messages]
        (edit,) = resolved.edit.document_changes
        assert edit.text_document.version == 2
        assert apply(TYPED + text, resolved.edit) == TYPED + text.replace(BODY, SIMPLE)
        assert all(e.range.start.line >= 3 + 5 for e in edit.edits)  # the user's lines are untouched


async def test_resolve_is_refused_when_the_function_itself_was_edited(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path)), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        change(client, uri, 2, 5, "        # keep a copy\n")  # inside `total`
        resolved = await client.code_action_resolve_async(action)
        assert resolved.edit is None
        (shown,) = await wait_message(client, "changed since the action was offered")
        assert "Simplify: the code changed" in shown and "nothing was changed" in shown
        assert not (tmp_path / "prompts.jsonl").exists()  # the model never ran on a stale target


async def test_resolve_is_refused_when_the_function_now_occurs_twice(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path)), tmp_path) as client:
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        copy = "class Copy:\n" + text[text.index("    def total"):text.index("\n    def name")] + "\n\n"
        change(client, uri, 2, 0, copy)
        resolved = await client.code_action_resolve_async(action)
        assert resolved.edit is None
        (shown,) = await wait_message(client, "more than once")
        assert "nothing was changed" in shown


async def test_run_action_after_lines_were_inserted_applies_to_the_moved_function(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path)), tmp_path) as client:
        received = record_apply_edits(client)
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        change(client, uri, 2, 0, TYPED)
        result = await (await run_command(client, "codeflow.runAction", action.data))
        assert result["applied"] is True
        (params,) = received
        assert params.edit.document_changes[0].text_document.version == 2
        assert apply(TYPED + text, params.edit) == TYPED + text.replace(BODY, SIMPLE)
        change(client, uri, 3, 8, "        # edited\n")  # now the old data points at a changed function
        again = await (await run_command(client, "codeflow.runAction", action.data))
        assert again["applied"] is False and len(received) == 1
        await wait_message(client, "changed since the action was offered")


async def test_typing_above_while_the_model_answers_moves_the_edit_with_the_code(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path, 60)), tmp_path) as client:
        received = record_apply_edits(client)
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        pending = await run_command(client, "codeflow.runAction", action.data)
        await wait_for_prompt(tmp_path)
        change(client, uri, 2, 0, TYPED)
        result = await asyncio.wait_for(pending, timeout=15)
        assert result["applied"] is True, [m.message for m in client.messages]
        (params,) = received
        assert params.edit.document_changes[0].text_document.version == 2
        assert apply(TYPED + text, params.edit) == TYPED + text.replace(BODY, SIMPLE)


async def test_editing_the_function_while_the_model_answers_drops_the_answer(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, options(models_dir, simplify_answers(tmp_path, 60)), tmp_path) as client:
        received = record_apply_edits(client)
        uri = open_doc(client, workspace / "store.py")
        action = await listed_simplify(client, uri)
        pending = await run_command(client, "codeflow.runAction", action.data)
        await wait_for_prompt(tmp_path)
        change(client, uri, 2, 5, "        # keep a copy\n")
        result = await asyncio.wait_for(pending, timeout=15)
        assert result["applied"] is False and received == []
        (shown,) = await wait_message(client, "document changed while the model was answering")
        assert "no longer in the document" in shown and "nothing was changed" in shown


async def wait_for_prompt(tmp_path: Path, timeout: float = 10.0) -> None:
    """Wait until the recorded model has its prompt, so a change lands while it answers."""
    log = tmp_path / "prompts.jsonl"
    for _ in range(int(timeout / 0.02)):
        if log.exists() and log.read_text().strip():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the model never got a prompt")


@contextlib.asynccontextmanager
async def session_with(root: Path, opts: dict, home: Path, caps: types.ClientCapabilities
                       ) -> AsyncIterator[LanguageClient]:
    """Like lsp_session, with the client capabilities given."""
    client = await ClientServerConfig(server_command=SERVER, server_env=isolated_env(home)).start()
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=caps, root_uri=root.as_uri(), initialization_options=opts,
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)]))
        await wait_indexed(client)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.shutdown_session()
        await client.stop()


@pytest.mark.parametrize("annotations", [True, False])
async def test_ai_edits_carry_a_confirming_change_annotation_when_the_client_supports_it(
    workspace: Path, models_dir: Path, tmp_path: Path, annotations: bool
) -> None:
    caps = client_capabilities("visual-studio-code")
    assert caps.workspace.workspace_edit.change_annotation_support is not None
    if not annotations:
        caps.workspace.workspace_edit.change_annotation_support = None
    async with session_with(workspace, options(models_dir, simplify_answers(tmp_path)), tmp_path, caps) as client:
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        resolved = await client.code_action_resolve_async(await listed_simplify(client, uri))
        assert resolved.edit is not None
        (edit,) = resolved.edit.document_changes
        assert apply(text, resolved.edit) == text.replace(BODY, SIMPLE)
        ids = {getattr(e, "annotation_id", None) for e in edit.edits}
        if annotations:
            (note,) = resolved.edit.change_annotations.values()
            assert note.label == "Codeflow: Simplify" and note.needs_confirmation is True
            assert ids == set(resolved.edit.change_annotations)
        else:
            assert resolved.edit.change_annotations is None and ids == {None}
