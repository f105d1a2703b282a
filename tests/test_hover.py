"""End to end: hovers answer at once with known facts; explanations run in the background, cached."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from lsprotocol import types

from codeflow.quant.models import default_chat_model_path
from lsp_session import lsp_session, open_doc, wait_for_message
from test_actions import instruct_stats, prompts, run_command, wait_ended, wait_for_report

TOTAL_DOC = "It doubles every item and returns them as a new list."
# Long, and never repeating itself: a looping answer is stopped as degenerate (issue 14).
NAME_DOC = " ".join(f"Point {i}: it returns the fixed name of the store." for i in range(12))


@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


def hover_options(models_dir: Path, tmp_path: Path, wait_ms: int = 0, chat_path: str | None = None) -> dict:
    answers = {
        "name": "recorded-chat",
        "log": str(tmp_path / "prompts.jsonl"),
        "answers": [
            {"match": "Explain `total`", "text": TOTAL_DOC, "delay_ms": 30},
            {"match": "Explain `name`", "text": NAME_DOC, "delay_ms": 15},
            {"match": "Explain `main`", "text": " ".join(f"Step {i} runs on." for i in range(400)),
             "delay_ms": 30},
        ],
    }
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    chat = f"recorded:{tmp_path / 'answers.json'}" if chat_path is None else chat_path
    return {"model": {"path": str(models_dir / "base.gguf"), "chatPath": chat}, "hover": {"waitMs": wait_ms}}


def at(uri: str, line: int, character: int) -> types.HoverParams:
    return types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri),
                             position=types.Position(line=line, character=character))


def cursor(uri: str, line: int, character: int) -> dict:
    return {"uri": uri, "position": {"line": line, "character": character}}


async def hover_until(client, params: types.HoverParams, text: str, timeout: float = 20.0) -> types.Hover:
    """Hover again until the answer holds `text` (the background job finished)."""
    for _ in range(int(timeout / 0.1)):
        result = await client.text_document_hover_async(params)
        if result is not None and text in result.contents.value:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"no hover with {text!r}; last: {result}")


async def test_first_hover_is_fast_and_a_later_one_has_the_cached_explanation(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        await hover_until(client, at(uri, 4, 10), "used in 1 place")  # the index is ready
        first = await client.text_document_hover_async(at(uri, 4, 10))
        value = first.contents.value
        assert "def total(self, items)" in value and "`store.py:5`" in value and "method" in value
        assert TOTAL_DOC not in value and "being written" in value
        assert first.range.start == types.Position(line=4, character=8)
        assert first.range.end == types.Position(line=4, character=13)
        later = await hover_until(client, at(uri, 4, 10), TOTAL_DOC)
        assert "def total(self, items)" in later.contents.value
        asked = [p for p in prompts(tmp_path) if "Explain `total`" in p]
        assert len(asked) == 1  # served from the cache, not generated again
        assert "store.py:17: print(shop.total([1, 2, 3]))" in asked[0]  # callers from the index
        assert asked[0].startswith("<|im_start|>system\n")


async def test_hover_on_a_call_finds_the_definition_in_another_file(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        result = await hover_until(client, at(uri, 7, 28), "helpers.py")
        value = result.contents.value
        assert "def double(x)" in value and "Twice x." in value and "`helpers.py:1`" in value
        assert "used in 2 places" in value


async def test_explain_command_streams_progress_and_fills_the_cache(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        result = await (await run_command(client, "codeflow.explainFunction", cursor(uri, 10, 9)))
        assert result["text"] == NAME_DOC.strip()
        (reports,) = [vs for vs in client.progress_reports.values() if vs and vs[0].title == "Explaining name"]
        partial = [v.message for v in reports if isinstance(v, types.WorkDoneProgressReport)]
        assert partial and all(NAME_DOC.startswith(p) for p in partial) and len(partial[0]) < len(NAME_DOC)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        cached = await client.text_document_hover_async(at(uri, 10, 9))
        assert NAME_DOC.strip() in cached.contents.value
        again = await (await run_command(client, "codeflow.explainFunction", cursor(uri, 10, 9)))
        assert again["text"] == NAME_DOC.strip()
        assert len([p for p in prompts(tmp_path) if "Explain `name`" in p]) == 1


async def test_cancelling_an_explanation_stops_generation(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        msg_id = str(uuid.uuid4())
        pending = await run_command(client, "codeflow.explainFunction", cursor(uri, 14, 5), msg_id=msg_id)
        await wait_for_report(client, timeout=60)  # the model is writing: text streamed
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
        with pytest.raises(Exception):
            await asyncio.wait_for(pending, timeout=10)
        first = await wait_ended(client, "explain")
        assert first["cancelled"] is True and 0 < first["tokens"] < 800
        assert (await instruct_stats(client))["explain"] == first


async def test_bad_hovers_get_nothing_and_the_server_keeps_serving(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    options = hover_options(models_dir, tmp_path, wait_ms=300, chat_path="")
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        assert await client.text_document_hover_async(at(uri, 500, 0)) is None
        assert await client.text_document_hover_async(at(uri, 4, 500)) is None
        assert await client.text_document_hover_async(at((workspace / "nope.py").as_uri(), 0, 0)) is None
        assert await client.text_document_hover_async(at(uri, 1, 0)) is None  # blank line
        # A local variable: the hover is of the function around it (issue 13).
        assert "def total(self, items)" in (await client.text_document_hover_async(at(uri, 5, 9))).contents.value
        result = await client.text_document_hover_async(at(uri, 4, 10))
        assert "def total(self, items)" in result.contents.value
        assert "explanation unavailable" in result.contents.value and "no chat model is set" in result.contents.value
        answer = await (await run_command(client, "codeflow.explainFunction", cursor(uri, 4, 10)))
        assert answer["text"] == "" and "no chat model is set" in answer["error"]
        bad = await (await run_command(client, "codeflow.explainFunction", {"uri": uri}))
        assert bad == {"text": ""}
        await wait_for_message(client, "no chat model is set")
        await wait_for_message(client, "explainFunction expects")
        assert await client.text_document_hover_async(at(uri, 10, 9)) is not None


async def test_real_instruct_model_explains_and_the_hover_caches_it(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    options = hover_options(models_dir, tmp_path, chat_path=str(default_chat_model_path()))
    options["hover"]["explainMaxTokens"] = 24
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        result = await asyncio.wait_for(
            await run_command(client, "codeflow.explainFunction", cursor(uri, 4, 10)), timeout=240)
        text = result["text"]
        assert text.strip() and "error" not in result
        stats = (await instruct_stats(client))["explain"]
        assert 0 < stats["tokens"] <= 24 and stats["first_token_s"] > 0
        hover = await client.text_document_hover_async(at(uri, 4, 10))
        assert text.strip() in hover.contents.value and "def total(self, items)" in hover.contents.value
