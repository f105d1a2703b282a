"""Issue 11, section 3: no secret leaves the machine.

Kinds tried (tests/secrets_ws.py builds them): AWS access key id, AWS secret access key, GitHub
token (ghp_), Slack bot token (xoxb-), Stripe live key (sk_live_), JWT, PEM private key block,
password= keyword, generic high-entropy hex key, Twilio API key, SendGrid API key, basic-auth URL
password, a .env file open in the editor, a symlink into a gitignored private/ directory, and a
gitignored secrets/keys.py open in the editor: 15 kinds.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
import secrets_ws
from fault_server import FaultServer
from lsp_session import inline_params, lsp_session, open_doc
from lsprotocol import types

from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.context.walk import FileFilter, walk
from codeflow.lsp_server.settings import RemoteSettings, Settings, apply_layer
from codeflow.quant.backend import CancelToken, ChatMessage, GenOptions, Prompt
from codeflow.quant.errors import LocalOnlyError, RemoteError
from codeflow.quant.fallback import FallbackBackend
from codeflow.quant.remote import RemoteBackend
from codeflow.quant.secrets import SCRUBBER, Scrubber, looks_like_key, scrub_body

KEY_ENV = {"CODEFLOW_TEST_KEY": "sk-test-7f3a9c1e5b2d4f60"}


@pytest.fixture
def ws(tmp_path: Path) -> secrets_ws.SecretWorkspace:
    root = tmp_path / "ws"
    root.mkdir()
    return secrets_ws.build(root)


def _remote(url: str, chat: bool = False) -> RemoteBackend:
    settings = RemoteSettings(url=url, model="tiny-model", api_key_env="CODEFLOW_TEST_KEY", retries=0)
    return RemoteBackend(settings, chat=chat, env=KEY_ENV)


# --- content scanning ------------------------------------------------------------------------


def test_every_inline_secret_is_replaced_by_a_stable_placeholder(ws: secrets_ws.SecretWorkspace) -> None:
    text = ws.settings_py.read_text()
    scrubbed = Scrubber().scrub(text)
    inline = {k: v for k, v in ws.secrets.items() if v in text}
    assert len(inline) >= 12
    secrets_ws.assert_no_secrets([scrubbed], inline)
    assert "<secret:1>" in scrubbed and "def database_url() -> str:" in scrubbed
    assert scrubbed.count("\n") <= text.count("\n")


def test_placeholders_are_stable_and_restored() -> None:
    scrubber = Scrubber()
    token = secrets_ws.make_secrets()["github_token"]
    a = scrubber.scrub(f'TOKEN = "{token}"\nx = 1')
    b = scrubber.scrub(f'other = "{token}"  # again')
    assert a == 'TOKEN = "<secret:1>"\nx = 1' and b == 'other = "<secret:1>"  # again'
    assert scrubber.scrub(f'TOKEN = "{token}"\nx = 1') == a  # byte-stable between keystrokes
    assert scrubber.restore(a) == f'TOKEN = "{token}"\nx = 1'
    pieces = ["use <sec", "ret:", "1> and <", "b>", " <secret:9", "9>"]
    assert "".join(scrubber.restore_stream(iter(pieces))) == f"use {token} and <b> <secret:99>"


def test_ordinary_code_is_left_alone() -> None:
    source = (Path(__file__).parent.parent / "context" / "rank.py").read_text()
    assert Scrubber().scrub(source) == source


def test_body_scrubbing_reaches_every_text_field() -> None:
    token = secrets_ws.make_secrets()["stripe_live_key"]
    body = {"model": "m", "prompt": token, "messages": [{"role": "user", "content": f"k={token!r}"}],
            "content": token, "input": token, "max_tokens": 3}
    sent = json.dumps(scrub_body(body))
    assert token not in sent and '"model": "m"' in sent and '"max_tokens": 3' in sent


# --- the remote backend: completions, chat and tokenize bodies -------------------------------


def test_remote_bodies_carry_no_secret(fault: FaultServer, ws: secrets_ws.SecretWorkspace) -> None:
    text = ws.settings_py.read_text()
    backend = _remote(fault.url)
    assert backend.count_tokens(text) > 0
    list(backend.stream(Prompt(text=text), GenOptions(max_tokens=3), CancelToken()))
    chat = _remote(fault.url, chat=True)
    messages = (ChatMessage(role="system", content="explain"), ChatMessage(role="user", content=text))
    list(chat.stream(Prompt(text=text, kind="chat", messages=messages), GenOptions(max_tokens=3), CancelToken()))
    paths = {r["path"] for r in fault.requests}
    assert {"/tokenize", "/v1/completions", "/v1/chat/completions"} <= paths
    secrets_ws.assert_no_secrets(secrets_ws.bodies(fault.requests), ws.secrets)


def test_an_echoed_placeholder_comes_back_as_the_value(fault: FaultServer) -> None:
    token = secrets_ws.make_secrets()["github_token"]
    placeholder = SCRUBBER.scrub(f'"{token}"').strip('"')
    fault.answer = f"return {placeholder}\n"  # streamed in 8-character pieces: the placeholder is split
    out = "".join(_remote(fault.url).stream(Prompt(text=f'T = "{token}"\n'), GenOptions(), CancelToken()))
    assert out == f"return {token}\n"
    secrets_ws.assert_no_secrets(secrets_ws.bodies(fault.requests), {"github": token})


# --- the API key setting ---------------------------------------------------------------------


@pytest.mark.parametrize("pasted", ["sk_" + "live_51HxYzAbCdEfGhIjKlMnOpQr", "ghp" + "_abc123def456ghi789jkl012mno345pqr678",
                                    "sk-" + "proj-9fQe2LmZpX7vR4tW"])
def test_a_pasted_key_is_refused_without_echo(pasted: str, fault: FaultServer) -> None:
    assert pasted.isidentifier() or "-" in pasted
    assert looks_like_key(pasted)
    with pytest.raises(RemoteError, match="apiKeyEnv") as err:
        RemoteBackend(RemoteSettings(url=fault.url, model="tiny-model", api_key_env=pasted), env={pasted: "x"})
    assert pasted not in str(err.value)
    settings, errors = apply_layer(Settings(), {"remote": {"apiKeyEnv": pasted}})
    assert settings.remote.api_key_env == "" and len(errors) == 1
    assert "apiKeyEnv" in str(errors[0]) and pasted not in str(errors[0])
    assert not fault.completion_requests()


def test_variable_names_are_accepted() -> None:
    for name in ("CODEFLOW_TEST_KEY", "OPENAI_API_KEY", "HF_TOKEN", "MY_VLLM_KEY_2"):
        assert not looks_like_key(name)
        assert apply_layer(Settings(), {"remote": {"apiKeyEnv": name}})[1] == []


# --- path rules: resolved targets, private documents -----------------------------------------


def test_a_link_is_judged_by_its_target(ws: secrets_ws.SecretWorkspace, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text("X = 1\n")
    os.symlink(outside, ws.root / "escape.py")
    flt = FileFilter(ws.root)
    assert not flt.admissible(ws.link_py) and not flt.admissible(ws.root / "escape.py")
    assert flt.admissible(ws.app_py)
    names = {p.name for p in walk(flt)}
    assert "local_keys.py" not in names and "escape.py" not in names and "app.py" in names


def test_engine_marks_private_documents(ws: secrets_ws.SecretWorkspace, tmp_path: Path) -> None:
    engine = ContextEngine([ws.root], EngineConfig(use_cache=False))
    engine.index_now()
    assert engine.is_private(ws.env_file) and engine.is_private(ws.keys_py) and engine.is_private(ws.link_py)
    assert engine.is_private(tmp_path / "outside.py")
    assert not engine.is_private(ws.app_py) and not engine.is_private(ws.settings_py)
    assert str(ws.link_py) not in engine.index.files


def test_fallback_never_sends_a_local_only_prompt_remote(fault: FaultServer) -> None:
    statuses: list = []
    fb = FallbackBackend(lambda: _remote(fault.url), None, statuses.append, primary_kind="remote")
    with pytest.raises(LocalOnlyError, match="private"):
        list(fb.stream(Prompt(text="SECRET=1", local_only=True), GenOptions(), CancelToken()))
    assert not fault.completion_requests()
    assert "".join(fb.stream(Prompt(text="x = 1"), GenOptions(), CancelToken())) == "w0 w1 w2 w3 w4 "


# --- end to end: `codeflow serve` with backend = "remote" ------------------------------------


async def _complete(client, uri: str, line: int, col: int) -> None:  # noqa: ANN001 - LanguageClient
    await client.text_document_inline_completion_async(inline_params(uri, line, col, invoked=True))


async def _wait_for(predicate, timeout: float = 15.0) -> bool:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_completion_sends_no_secret(fault: FaultServer, ws: secrets_ws.SecretWorkspace, tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    options = {"backend": "remote", "logLevel": "debug",
               "remote": {"url": fault.url, "model": "tiny-model", "retries": 0}}
    async with lsp_session(ws.root, options, tmp_path / "home", log_file=log_file) as client:
        settings_uri = open_doc(client, ws.settings_py)
        end = ws.settings_py.read_text().split("\n")
        await _complete(client, settings_uri, len(end) - 1, 0)  # every secret is in the prefix
        app_uri = open_doc(client, ws.app_py)
        await _complete(client, app_uri, 6, 0)  # imports settings.py and local_keys.py: context
        sent_before = len(fault.completion_requests())
        assert sent_before >= 2, "the ordinary files were not completed remotely"
        for private in (ws.env_file, ws.keys_py, ws.link_py):
            uri = open_doc(client, private, language="python")
            lines = private.read_text().split("\n")
            await _complete(client, uri, len(lines) - 1, len(lines[-1]))
        assert await _wait_for(lambda: sum("is off" in m.message for m in client.messages) >= 3)
        assert len(fault.completion_requests()) == sent_before, "a private document went remote"
        shown = [m.message for m in client.messages if "is off" in m.message]
        assert any(".env is off" in m for m in shown) and any("keys.py is off" in m for m in shown)
        hover = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=ws.keys_py.as_uri()),
                                  position=types.Position(line=3, character=5))
        await client.text_document_hover_async(hover)
        assert await _wait_for(lambda: any("explain in keys.py is off" in m.message for m in client.messages))
        assert not [r for r in fault.requests if r["path"].endswith("chat/completions")]
    body_texts = secrets_ws.bodies(fault.requests)
    assert any("def database_url" in b for b in body_texts)  # the prompts were real, just scrubbed
    secrets_ws.assert_no_secrets(body_texts, ws.secrets)
    log = log_file.read_text()
    assert "DEBUG" in log
    secrets_ws.assert_no_secrets([log], ws.secrets)


async def test_every_action_and_explain_send_no_secret(
    fault: FaultServer, ws: secrets_ws.SecretWorkspace, tmp_path: Path
) -> None:
    from test_actions import diagnostic, selection

    log_file = tmp_path / "server.log"
    options = {"backend": "remote", "logLevel": "debug",
               "remote": {"url": fault.url, "model": "tiny-model", "retries": 0}}
    settings_lines = ws.settings_py.read_text().split("\n")
    url_line = next(i for i, line in enumerate(settings_lines) if line.startswith("def database_url"))
    async with lsp_session(ws.root, options, tmp_path / "home", log_file=log_file) as client:
        app_uri, settings_uri = open_doc(client, ws.app_py), open_doc(client, ws.settings_py)
        offered = await client.text_document_code_action_async(
            selection(app_uri, (5, 0), (7, 0), [diagnostic(5, "undefined name 'GITHUB_TOKEN'")]))
        # A selection that holds the secrets themselves: the region is scrubbed too.
        offered += await client.text_document_code_action_async(selection(settings_uri, (2, 0), (12, 0)))
        assert {a.data["action"] for a in offered} >= {"fix", "extract", "document", "simplify", "rename"}
        for action in offered:
            await client.code_action_resolve_async(action)
        for uri, line, col in ((app_uri, 4, 6), (settings_uri, url_line, 6)):
            params = types.ExecuteCommandParams(
                command="codeflow.explainFunction", arguments=[{"uri": uri, "position": {"line": line, "character": col}}])
            await client.workspace_execute_command_async(params)
    chats = [json.dumps(r["body"]) for r in fault.requests if r["path"].endswith("chat/completions")]
    assert len(chats) == len(offered) + 2, (len(chats), len(offered))
    assert any("def connect" in c and "def database_url" in c for c in chats)  # code and its context
    assert sum("AWS_ACCESS_KEY_ID = " in c for c in chats) >= len(offered)  # scrubbed, not dropped
    secrets_ws.assert_no_secrets(secrets_ws.bodies(fault.requests), ws.secrets)
    secrets_ws.assert_no_secrets([log_file.read_text()], ws.secrets)
