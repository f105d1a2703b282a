"""End to end (issue 11 section 1): an AI edit never lands on lines that moved.

An action is listed at one document version and resolved (or run) after the user typed; the edit
must be made on the text as it is then, where the target function now is, or refused with a
message and no change. AI edits carry change annotations that ask the editor to confirm them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities

from lsp_session import wait_for_message
from test_actions import (
    LOOP_ANSWER,
    apply,
    change,
    listed_simplify,
    messages,
    record_apply_edits,
    run_command,
    store_session,
)

TYPED = "# typed by the user\nout = 0\n\n"
# What "Simplify" makes of `Store.total` in tests/data/actions/store.py.
BODY = ("        result = []\n        for item in items:\n            result.append(double(item))\n"
        "        return result\n")
SIMPLE = "        return [double(item) for item in items]\n"


@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


def simplify_answers(tmp_path: Path, delay_ms: float = 0) -> str:
    """A recording whose "Simplify" answer is the comprehension; returns `model.chatPath`."""
    data = {"name": "recorded-chat", "log": str(tmp_path / "prompts.jsonl"),
            "answers": [{"match": "Simplify and modernise", "text": LOOP_ANSWER, "delay_ms": delay_ms}]}
    path = tmp_path / "simplify.json"
    path.write_text(json.dumps(data))
    return f"recorded:{path}"


async def wait_message(client: LanguageClient, text: str, timeout: float = 10.0) -> list[str]:
    """The messages holding `text`, once one arrived."""
    await wait_for_message(client, text, timeout)
    return messages(client, text)


@contextlib.asynccontextmanager
async def resolved_after(workspace: Path, models_dir: Path, tmp_path: Path, line: int, typed: str
                         ) -> AsyncIterator[tuple[LanguageClient, types.CodeAction, types.CodeAction]]:
    """List "Simplify" at version 1, insert `typed` at `line` as version 2, then resolve the
    listed action; yields the client, the listed action and the resolved one."""
    async with store_session(workspace, models_dir, tmp_path, simplify_answers(tmp_path)) as (client, uri):
        action = await listed_simplify(client, uri)
        change(client, uri, 2, line, typed)
        yield client, action, await client.code_action_resolve_async(action)


async def test_resolve_after_lines_were_inserted_above_edits_the_moved_function(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    text = (workspace / "store.py").read_text()
    async with resolved_after(workspace, models_dir, tmp_path, 0, TYPED) as (client, action, resolved):
        assert action.data["version"] == 1 and action.data["startLine"] == 4
        assert resolved.edit is not None, [m.message for m in client.messages]
        (edit,) = resolved.edit.document_changes
        assert edit.text_document.version == 2
        assert apply(TYPED + text, resolved.edit) == TYPED + text.replace(BODY, SIMPLE)
        assert all(e.range.start.line >= 3 + 5 for e in edit.edits)  # the user's lines are untouched


async def test_resolve_is_refused_when_the_function_itself_was_edited(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    inside_total = "        # keep a copy\n"
    async with resolved_after(workspace, models_dir, tmp_path, 5, inside_total) as (client, _, resolved):
        assert resolved.edit is None
        (shown,) = await wait_message(client, "changed since the action was offered")
        assert "Simplify: the code changed" in shown and "nothing was changed" in shown
        assert not (tmp_path / "prompts.jsonl").exists()  # the model never ran on a stale target


async def test_resolve_is_refused_when_the_function_now_occurs_twice(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    text = (workspace / "store.py").read_text()
    copy = "class Copy:\n" + text[text.index("    def total"):text.index("\n    def name")] + "\n\n"
    async with resolved_after(workspace, models_dir, tmp_path, 0, copy) as (client, _, resolved):
        assert resolved.edit is None
        (shown,) = await wait_message(client, "more than once")
        assert "nothing was changed" in shown


async def test_run_action_after_lines_were_inserted_applies_to_the_moved_function(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    text = (workspace / "store.py").read_text()
    async with store_session(workspace, models_dir, tmp_path, simplify_answers(tmp_path)) as (client, uri):
        received = record_apply_edits(client)
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
    text = (workspace / "store.py").read_text()
    async with store_session(workspace, models_dir, tmp_path, simplify_answers(tmp_path, 60)) as (client, uri):
        received = record_apply_edits(client)
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
    async with store_session(workspace, models_dir, tmp_path, simplify_answers(tmp_path, 60)) as (client, uri):
        received = record_apply_edits(client)
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


@pytest.mark.parametrize("annotations", [True, False])
async def test_ai_edits_carry_a_confirming_change_annotation_when_the_client_supports_it(
    workspace: Path, models_dir: Path, tmp_path: Path, annotations: bool
) -> None:
    caps = client_capabilities("visual-studio-code")
    assert caps.workspace.workspace_edit.change_annotation_support is not None
    if not annotations:
        caps.workspace.workspace_edit.change_annotation_support = None
    text = (workspace / "store.py").read_text()
    async with store_session(workspace, models_dir, tmp_path, simplify_answers(tmp_path), caps) as (client, uri):
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
