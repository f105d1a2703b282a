"""The remote path sends real prompts: every action, explain and completion carry the code, the
instruction and the cross-file context, recorded by a fake OpenAI-compatible server (issue 11 §2)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer
from lsprotocol import types

from codeflow.context.edits import error_count
from codeflow.lsp_server.assistant import instruct
from codeflow.quant.backend import CancelToken, ChatMessage, GenOptions, Prompt
from codeflow.quant.errors import EmptyPromptError
from codeflow.quant.remote import RemoteBackend
from lsp_session import inline_params, lsp_session, open_doc, wait_for_status
from test_actions import apply, diagnostic, run_command, selection
from test_remote import settings

DATA = Path(__file__).parent / "data" / "actions"
LOOP_ANSWER = "```python\ndef total(self, items):\n    return [double(item) for item in items]\n```\n"
COMPREHENSION = "def evens(xs):\n    return [x for x in xs if x % 2 == 0]\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(DATA, root)
    (root / "store.py").write_text((root / "store.py").read_text() + "\n\n" + COMPREHENSION)
    return root


def remote_options(fault: FaultServer, **extra: Any) -> dict[str, Any]:
    return {"backend": "remote", "remote": {"url": fault.url, "model": fault.model, "retries": 0}, **extra}


def chat_bodies(fault: FaultServer) -> list[dict[str, Any]]:
    return [r["body"] for r in fault.requests if r["path"] == "/v1/chat/completions"]


def user_text(body: dict[str, Any]) -> str:
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user"], messages
    assert all(m["content"].strip() for m in messages)
    return messages[-1]["content"]


async def test_every_action_sends_the_code_the_instruction_and_the_context(
    workspace: Path, fault: FaultServer, tmp_path: Path
) -> None:
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        diag = diagnostic(7, "undefined name 'doubel'")
        offered = await client.text_document_code_action_async(selection(uri, (6, 0), (8, 0), [diag]))
        offered += await client.text_document_code_action_async(selection(uri, (20, 8), (20, 8)))
        by_action = {a.data["action"]: a for a in reversed(offered)}
        assert set(by_action) == set(instruct.KINDS), sorted(by_action)
        for action_id, action in sorted(by_action.items()):
            before = len(chat_bodies(fault))
            await client.code_action_resolve_async(action)
            bodies = chat_bodies(fault)
            assert len(bodies) == before + 1, action_id
            user = user_text(bodies[-1])
            kind = instruct.KINDS[action_id]
            assert kind.instruction.split("{")[0].split("\n")[0][:24] in user, (action_id, user)
            code = "return [x for x in xs if x % 2 == 0]" if action_id == "to_loop" else "result.append(double(item))"
            assert code in user, (action_id, user)
            if action_id != "to_loop":  # store.py's `double` comes from helpers.py
                assert 'def double(x):\n    """Twice x."""' in user, (action_id, user)
            # A chat endpoint applies its own template: nothing is pre-rendered or prefilled.
            assert "<|im_start|>" not in str(bodies[-1]) and "```python\n" not in bodies[-1]["messages"][0]["content"]
        assert "doubel" in user_text(chat_bodies(fault)[sorted(by_action).index("fix")])


async def test_a_remote_answer_is_parsed_without_a_prefill_and_applied(
    workspace: Path, fault: FaultServer, tmp_path: Path
) -> None:
    fault.answer = "Here is the rewrite:\n\n" + LOOP_ANSWER + "\nIt keeps the behaviour."
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        text = (workspace / "store.py").read_text()
        uri = open_doc(client, workspace / "store.py")
        actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        loop = next(a for a in actions if a.title.startswith("Convert loop"))
        resolved = await client.code_action_resolve_async(loop)
        assert resolved.edit is not None, [m.message for m in client.messages]
        result = apply(text, resolved.edit)
        assert "        return [double(item) for item in items]\n" in result and error_count("python", result) == 0
        (body,) = chat_bodies(fault)
        assert "stop" not in body  # the fence the model opens itself must not end its answer


async def test_an_answer_to_the_wrong_question_is_not_applied(
    workspace: Path, fault: FaultServer, tmp_path: Path
) -> None:
    fault.answer = "w0 w1 w2"  # what a model says to an empty prompt: no code
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        received: list[types.ApplyWorkspaceEditParams] = []
        client.feature(types.WORKSPACE_APPLY_EDIT)(lambda params: received.append(params) or
                                                   types.ApplyWorkspaceEditResult(applied=True))
        uri = open_doc(client, workspace / "store.py")
        actions = await client.text_document_code_action_async(selection(uri, (5, 3), (5, 3)))
        simplify = next(a for a in actions if a.title.startswith("Simplify"))
        result = await (await run_command(client, "codeflow.runAction", simplify.data))
        assert result["applied"] is False and received == []
        assert len(chat_bodies(fault)) == 1


async def test_explain_sends_the_function_and_its_callers(workspace: Path, fault: FaultServer, tmp_path: Path) -> None:
    fault.answer = "It doubles every item and returns the new list."
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        target = {"uri": uri, "position": {"line": 4, "character": 10}}
        result = await (await run_command(client, "codeflow.explainFunction", target))
        assert result["text"] == fault.answer
        (body,) = chat_bodies(fault)
        user = user_text(body)
        assert "Explain `total`" in user and "result.append(double(item))" in user
        assert "store.py" in user and "shop.total([1, 2, 3])" in user  # where it is used


async def test_completion_sends_the_prefix_and_the_context(workspace: Path, fault: FaultServer, tmp_path: Path) -> None:
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        await client.text_document_inline_completion_async(inline_params(uri, 8, 8))
        bodies = [r["body"] for r in fault.requests if r["path"] == "/v1/completions"]
        assert bodies, fault.requests
        prompt = bodies[-1]["prompt"]
        assert 'def double(x):\n    """Twice x."""' in prompt  # from helpers.py
        assert prompt.endswith("        for item in items:\n            result.append(double(item))\n        ")


async def test_remote_status_names_the_remote_backend(workspace: Path, fault: FaultServer, tmp_path: Path) -> None:
    async with lsp_session(workspace, remote_options(fault), tmp_path) as client:
        uri = open_doc(client, workspace / "store.py")
        await client.text_document_inline_completion_async(inline_params(uri, 8, 8))
        await wait_for_status(client, lambda s: s["state"] == "ready")
        seen = list(client.statuses)
    assert all(s["backend"] == "remote" for s in seen), seen
    assert not any(s["state"] == "fallback" for s in seen), seen
    assert not [m for m in client.messages if "local backend" in m.message]


async def test_a_function_too_long_for_the_context_is_refused_not_cut(
    tmp_path: Path, fault: FaultServer
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    body = "".join(f"    value_{i} = compute(value_{i - 1}, {i}) + offset * {i}\n" for i in range(1, 200))
    (root / "big.py").write_text(f"def big(offset):\n    value_0 = offset\n{body}    return value_199\n")
    async with lsp_session(root, remote_options(fault), tmp_path) as client:
        uri = open_doc(client, root / "big.py")
        actions = await client.text_document_code_action_async(selection(uri, (0, 5), (0, 5)))
        simplify = next(a for a in actions if a.title.startswith("Simplify"))
        assert (await client.code_action_resolve_async(simplify)).edit is None
        for _ in range(100):
            if any("context holds 1024" in m.message for m in client.messages):
                break
            await asyncio.sleep(0.05)
        assert any("context holds 1024" in m.message for m in client.messages), [m.message for m in client.messages]
        assert chat_bodies(fault) == []  # nothing was sent cut short


def test_empty_prompts_are_never_sent(fault: FaultServer) -> None:
    backend = RemoteBackend(settings(fault.url), env={"CODEFLOW_TEST_KEY": "sk-test-7f3a9c1e5b2d4f60"})
    with pytest.raises(EmptyPromptError):
        list(backend.stream(Prompt(text="  \n"), GenOptions(), CancelToken()))
    chat = Prompt(text="", kind="chat", messages=(ChatMessage(role="system", content="be brief"),
                                                  ChatMessage(role="user", content="\n")))
    with pytest.raises(EmptyPromptError):
        list(backend.stream(chat, GenOptions(), CancelToken()))
    assert fault.completion_requests() == []
    real = Prompt(text="", kind="chat", messages=(ChatMessage(role="user", content="hello"),))
    assert "".join(backend.stream(real, GenOptions(max_tokens=2), CancelToken())) == "w0 w1 "
    (request,) = fault.completion_requests()
    assert request["body"]["messages"] == [{"role": "user", "content": "hello"}]


def test_a_chat_prompt_with_nothing_to_say_is_refused_locally_too() -> None:
    from codeflow.context.prompt import BuiltPrompt

    rendered = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\n <|im_end|>\n<|im_start|>assistant\n"
    empty = BuiltPrompt(text=rendered, kind="chat", messages=(("system", "be brief"), ("user", " ")))
    with pytest.raises(EmptyPromptError):
        instruct.backend_prompt(empty)
    said = BuiltPrompt(text=rendered, kind="chat", messages=(("system", "be brief"), ("user", "explain f")))
    assert instruct.backend_prompt(said, "k").messages[-1] == ChatMessage(role="user", content="explain f")
    with pytest.raises(EmptyPromptError):
        instruct.backend_prompt(BuiltPrompt(text="\n", kind="prefix"))
