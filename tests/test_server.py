"""End to end: `codeflow serve` as a subprocess, a pytest-lsp client, tiny real GGUF models."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_session import idle, inline_params, lsp_session, open_doc, stats, wait_for_message, wait_for_stats

SOURCE = "import os\n\n\ndef load_config(path):\n    with open(path) as fh:\n        return fh.read()\n\n\ndef main():\n    cfg = load_config(\n"


@pytest.fixture
def workspace(write_workspace: Callable[[dict[str, str]], Path]) -> Path:
    return write_workspace({"main.py": SOURCE})


async def test_initialize_advertises_inline_completion(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with lsp_session(workspace, {"model": {"path": str(models_dir / "base.gguf")}}, tmp_path) as client:
        result = client.initialize_result.capabilities
        assert result.inline_completion_provider is not None
        assert result.completion_provider is not None
        sync = result.text_document_sync
        assert sync.change == types.TextDocumentSyncKind.Incremental


@pytest.mark.parametrize(
    ("model", "kind"),
    [("base.gguf", "prefix"), ("fim.gguf", "fim"), ("fim_vocab.gguf", "fim"), ("chat.gguf", "chat")],
)
async def test_inline_completion_picks_prompt_format(
    workspace: Path, models_dir: Path, tmp_path: Path, model: str, kind: str
) -> None:
    options = {"model": {"path": str(models_dir / model)}, "completion": {"backgroundTokens": 0}}
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        result = await client.text_document_inline_completion_async(inline_params(uri, 9, 22, invoked=True))
        assert isinstance(result, types.InlineCompletionList)
        info = await stats(client)
        assert info["prompt_kind"] == kind
        assert info["tokens"] > 0 and not info["error"]
        for item in result.items:
            assert item.insert_text.strip()
            assert item.insert_text == item.insert_text.rstrip()


async def test_completion_fallback_returns_an_item(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    options = {"model": {"path": str(models_dir / "endless.gguf")}, "completion": {"maxTokens": 12}}
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        result = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=9, character=22),
                context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
            )
        )
        assert result is not None and len(result.items) == 1
        item = result.items[0]
        assert item.text_edit.new_text.strip()
        assert item.text_edit.range.start == types.Position(line=9, character=22)


ENDLESS = {"completion": {"maxTokens": 8, "backgroundTokens": 0}}


async def warm_endless(client: LanguageClient, uri: str) -> None:
    """Load the model with a short request, then let generations run (almost) forever."""
    await client.text_document_inline_completion_async(inline_params(uri, 0, 0))
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"codeflow": {"completion": {"maxTokens": 100000}}})
    )


async def _start_endless(client, uri: str, line: int, col: int) -> tuple[str, asyncio.Future]:
    msg_id = str(uuid.uuid4())
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, col), msg_id=msg_id
    )
    return msg_id, asyncio.wrap_future(future)


async def _wait_generating(client, started_before: int, timeout: float = 60.0) -> None:
    """Until a job started after `started_before` generations is generating (a running job has
    tokens and no total time yet): a cancel before that stops its prompt evaluation, with no
    token to count (issue 12). The count tells it from the previous job, which may still be
    finishing its last token when the new request goes out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        last = await stats(client)
        newer = last["totals"]["generations_started"] > started_before
        if newer and last["tokens"] > 0 and last["total_s"] < 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the request never started generating: {last}")


@contextlib.asynccontextmanager
async def _generating(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[LanguageClient, str, str, asyncio.Future]]:
    """A session on the endless model whose request at the end of main.py is generating; yields
    the client, the document's URI, and that request's id and future."""
    options = {"model": {"path": str(models_dir / "endless.gguf")}, **ENDLESS}
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        await warm_endless(client, uri)
        started = (await stats(client))["totals"]["generations_started"]
        msg_id, pending = await _start_endless(client, uri, 9, 22)
        await _wait_generating(client, started)
        yield client, uri, msg_id, pending


async def _cancel(client: LanguageClient, msg_id: str, pending: asyncio.Future) -> None:
    """Send `$/cancelRequest`; the request must end with an error, not an answer."""
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(Exception):
        await asyncio.wait_for(pending, timeout=10)


async def test_cancel_request_stops_generation(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with _generating(workspace, models_dir, tmp_path) as (client, _, msg_id, pending):
        await _cancel(client, msg_id, pending)
        first = await wait_for_stats(client, idle)  # nothing generates any more
        assert first["cancelled"] is True
        assert first["tokens_after_cancel"] <= 1
        assert 0 < first["tokens"] < 100000
        assert first["totals"]["generations_cancelled"] >= 1
        assert await stats(client) == first


async def test_newer_request_stops_the_stale_one(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with _generating(workspace, models_dir, tmp_path) as (client, uri, _, old):
        new_id, new = await _start_endless(client, uri, 5, 8)
        result = await asyncio.wait_for(old, timeout=10)  # the stale request ends at once
        assert isinstance(result, dict | types.InlineCompletionList)
        stale = (await wait_for_stats(client, lambda s: s["previous"]["cancelled"]))["previous"]
        assert stale["tokens_after_cancel"] <= 1
        await _cancel(client, new_id, new)


async def test_server_answers_while_generating(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    async with _generating(workspace, models_dir, tmp_path) as (client, _, msg_id, pending):
        # The loop is free: another request is answered while the model generates.
        info = await asyncio.wait_for(stats(client), timeout=2)
        assert isinstance(info, dict)
        assert not pending.done()
        await _cancel(client, msg_id, pending)
    # leaving the context manager ran shutdown/exit; the process must be gone
    assert client._server.returncode is not None


async def test_cache_serves_typing_through(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    options = {"model": {"path": str(models_dir / "printable.gguf")}, "completion": {"backgroundTokens": 64}}
    async with lsp_session(workspace, options, tmp_path) as client:
        # Plain text: the tiny random model's answer loops without closing `load_config(`, which
        # Python's checks rightly refuse to show; no grammar judges a text file.
        uri = open_doc(client, workspace / "notes.txt", text=SOURCE, language="plaintext")
        first = await client.text_document_inline_completion_async(inline_params(uri, 9, 22))
        before = await wait_for_stats(client, idle)  # the background tokens are in the cache
        assert first.items and first.items[0].insert_text
        typed = first.items[0].insert_text[0]
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=9, character=22), end=types.Position(line=9, character=22)),
                    text=typed,
                )],
            )
        )
        second = await client.text_document_inline_completion_async(inline_params(uri, 9, 23))
        after = await stats(client)
        rest = first.items[0].insert_text[1:]
        shown = second.items[0].insert_text if second.items else ""
        # Served from the same generation: the same text (post-processing may cut it elsewhere).
        assert shown and (rest.startswith(shown) or shown.startswith(rest))
        assert after["cache_hits"] == before["cache_hits"] + 1
        # No new generation ran for the typed character: the cache answered it.
        assert after["totals"]["generations_started"] == before["totals"]["generations_started"]


async def test_bad_requests_get_empty_results_and_server_lives(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, {"model": {"path": str(models_dir / "base.gguf")}}, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        missing = (workspace / "nope.py").as_uri()
        assert (await client.text_document_inline_completion_async(inline_params(missing, 0, 0))).items == ()
        assert (await client.text_document_inline_completion_async(inline_params(uri, 500, 0))).items == ()
        assert (await client.text_document_inline_completion_async(inline_params(uri, 3, 999))).items == ()
        binary = workspace / "blob.py"
        binary.write_bytes(b"\x00\x01\xffgarbage\xfe")
        assert (await client.text_document_inline_completion_async(inline_params(binary.as_uri(), 0, 0))).items == ()
        bin_uri = open_doc(client, workspace / "bin2.py", text="ab\x00cd\n")
        assert (await client.text_document_inline_completion_async(inline_params(bin_uri, 0, 1))).items == ()
        huge = open_doc(client, workspace / "huge.py", text="x = '" + "a" * 900_000 + "'\n")
        result = await client.text_document_inline_completion_async(inline_params(huge, 0, 450_000))
        assert isinstance(result, types.InlineCompletionList)
        info = await stats(client)
        assert info["key"] == huge and info["prompt_chars"] < 20_000  # the window was cut
        # Over context.maxFileBytes, the one size limit (bytes: 0.6M characters, 1.2 MB in UTF-8).
        over = open_doc(client, workspace / "over.py", text="x = '" + "é" * 600_000 + "'\n")
        assert (await client.text_document_inline_completion_async(inline_params(over, 0, 1000))).items == ()
        assert (await stats(client))["key"] == huge
        await wait_for_message(client, "larger than context.maxFileBytes (1000000 bytes)", log=True)
        ok = await client.text_document_inline_completion_async(inline_params(uri, 9, 22, invoked=True))
        assert isinstance(ok, types.InlineCompletionList)
        assert (await stats(client))["tokens"] > 0


async def test_invalid_setting_is_named_and_previous_value_kept(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    options = {"model": {"path": str(models_dir / "base.gguf")}, "completion": {"maxTokens": "lots"}}
    async with lsp_session(workspace, options, tmp_path) as client:
        await wait_for_message(client, "completion.maxTokens")
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codeflow": {"completion": {"temperature": "hot"}}})
        )
        uri = open_doc(client, workspace / "main.py")
        result = await client.text_document_inline_completion_async(inline_params(uri, 9, 22, invoked=True))
        assert isinstance(result, types.InlineCompletionList)
        assert any("completion.temperature" in m.message for m in client.messages)
        assert (await stats(client))["tokens"] > 0  # still completing with the old values


@pytest.mark.parametrize("broken", ["missing", "corrupt"])
async def test_bad_model_file_is_reported_then_recovers(
    workspace: Path, models_dir: Path, tmp_path: Path, broken: str
) -> None:
    bad = tmp_path / "bad.gguf"
    if broken == "corrupt":
        bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 64)
    async with lsp_session(workspace, {"model": {"path": str(bad)}}, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        result = await client.text_document_inline_completion_async(inline_params(uri, 9, 22))
        assert not result.items
        await wait_for_message(client, "bad.gguf", kind=types.MessageType.Error)
        good = tmp_path / "good.gguf"
        shutil.copy(models_dir / "base.gguf", good)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codeflow": {"model": {"path": str(good)}}})
        )
        await client.text_document_inline_completion_async(inline_params(uri, 9, 22, invoked=True))
        assert (await stats(client))["tokens"] > 0



async def test_show_context_command_returns_the_flask_user_model(
    sample_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(sample_dir, {"model": {"path": str(models_dir / "base.gguf")}}, tmp_path) as client:
        uri = open_doc(client, sample_dir / "app.py")
        arg = {"uri": uri, "position": {"line": 27, "character": 11}}
        # lsp_session waited for the end of the "Indexing workspace" progress.
        assert any(
            isinstance(r, types.WorkDoneProgressEnd) and "indexed" in (r.message or "")
            for values in client.progress_reports.values() for r in values
        )
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="codeflow.showContext", arguments=[arg])
        )
        result = result._asdict() if hasattr(result, "_asdict") else result
        snippets = [s._asdict() if hasattr(s, "_asdict") else s for s in result["snippets"]]
        assert any(s["path"] == "models.py" and "class User" in s["text"] for s in snippets)
        assert result["used"] <= result["budget"]
        # The view the editors show as it is: the server renders it, once (issue 17 §5).
        view = result["markdown"]
        assert view.startswith("# Codeflow context for app.py:28\n")
        assert f"{len(snippets)} snippets, {result['used']} of {result['budget']} tokens used." in view
        user = next(s for s in snippets if s["path"] == "models.py" and "class User" in s["text"])
        assert f"## models.py:{user['start_line']}-{user['end_line']}\n" in view
        assert "```python\n" + user["text"].rstrip("\n") + "\n```" in view
        with pytest.raises(Exception, match="expects"):
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="codeflow.showContext", arguments=[{"uri": uri}])
            )
        info = await client.text_document_inline_completion_async(inline_params(uri, 27, 11))
        assert isinstance(info, types.InlineCompletionList)  # the server still serves


async def test_a_model_load_is_shown_on_the_requests_work_done_token(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    """LSP: a request that carries a `workDoneToken` gets its progress there, on no new token."""
    async with lsp_session(workspace, {"model": {"path": str(models_dir / "base.gguf")}}, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        await client.text_document_inline_completion_async(inline_params(uri, 9, 22, invoked=True))
        other = tmp_path / "other.gguf"
        shutil.copy(models_dir / "base.gguf", other)
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"codeflow": {"model": {"path": str(other)}}})
        )
        created = set(client.progress_reports)
        client.progress_reports["req-1"] = []  # the client made this token: it listens on it
        params = inline_params(uri, 9, 22, invoked=True)
        params.work_done_token = "req-1"
        await client.text_document_inline_completion_async(params)
        shown = client.progress_reports["req-1"]
        assert [type(r) for r in shown] == [types.WorkDoneProgressBegin, types.WorkDoneProgressEnd], shown
        assert shown[0].title == "Loading model"
        assert set(client.progress_reports) == created | {"req-1"}  # and no token of its own
        assert (await stats(client))["tokens"] > 0
