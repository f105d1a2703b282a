"""Remote endpoint faults (issue 12): a hung endpoint, cancel in every state, cancel during back-off,
incomplete or malformed answers, floods and drips, and a settings change during a hang."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_server import FaultServer, StalledListener
from lsprotocol import types

from codeflow.context.prompt import BuiltPrompt
from codeflow.lsp_server.assistant import instruct
from codeflow.lsp_server.assistant.jobs import Job
from codeflow.lsp_server.assistant.completion import CompletionRequest, CompletionService
from codeflow.lsp_server.settings import RemoteSettings, Settings
from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.breaker import CircuitBreaker
from codeflow.quant.errors import RemoteError, RemoteTimeoutError
from codeflow.quant.fallback import FallbackBackend, Status
from codeflow.quant.remote import RemoteBackend
from lsp_session import inline_params, lsp_session, open_doc, wait_for_status

ENV = {"CODEFLOW_TEST_KEY": "sk-test-7f3a9c1e5b2d4f60"}


def settings(url: str, **kw: object) -> RemoteSettings:
    base = {"url": url, "model": "tiny-model", "api_key_env": "CODEFLOW_TEST_KEY",
            "connect_timeout_s": 30.0, "read_timeout_s": 30.0, "retries": 2}
    return RemoteSettings(**{**base, **kw})  # type: ignore[arg-type]


def remote(url: str, breaker: CircuitBreaker | None = None, backoff_s: float = 0.01, **kw: object) -> RemoteBackend:
    return RemoteBackend(settings(url, **kw), env=ENV, backoff_s=backoff_s, breaker=breaker)


class Reader:
    """Reads a stream on its own thread, as the completion job does, and records how it ended."""

    def __init__(self, backend: RemoteBackend, opts: GenOptions = GenOptions(max_tokens=64)) -> None:
        self.cancel = CancelToken()
        self.pieces: list[str] = []
        self.first = threading.Event()
        self.error: Exception | None = None
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(backend, opts), daemon=True)
        self._thread.start()

    def _run(self, backend: RemoteBackend, opts: GenOptions) -> None:
        try:
            for piece in backend.stream(Prompt(text="def f("), opts, self.cancel):
                self.pieces.append(piece)
                self.first.set()
        except Exception as exc:
            self.error = exc
        self.ended_at = time.monotonic()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def test_a_hung_endpoint_is_answered_within_the_overall_deadline(fault: FaultServer) -> None:
    fault.mode = "hang_headers"
    # Each try would wait 3 s for its first byte, three tries in all: 9 s without a deadline.
    backend = remote(fault.url, read_timeout_s=3.0, completion_deadline_s=1.0)
    reader = Reader(backend)
    assert reader.join(2.5), "the request outlived its 1 s deadline"
    assert isinstance(reader.error, RemoteTimeoutError)
    assert "within 1.0s" in str(reader.error)
    assert fault.disconnected.wait(1.0), "the hung connection was left open"


@pytest.mark.parametrize("state", ["connecting", "waiting for headers", "streaming"])
def test_cancel_closes_the_request_within_a_second_in_every_state(fault: FaultServer, state: str) -> None:
    stalled = StalledListener() if state == "connecting" else None
    fault.mode = "hang_headers" if state == "waiting for headers" else "hang_stream"
    backend = remote(stalled.url if stalled else fault.url)
    try:
        reader = Reader(backend)
        if state == "connecting":
            time.sleep(0.3)  # no event to wait for: the kernel drops the SYNs and tells nobody
        elif state == "waiting for headers":
            assert _wait(lambda: fault.completion_requests(), 5.0)
        else:
            assert reader.first.wait(5.0)
        cancelled = time.monotonic()
        reader.cancel.cancel()
        assert reader.join(1.0), f"cancel while {state} took more than 1 s"
        assert reader.error is None
        if stalled is None:
            assert fault.disconnected.wait(1.0), f"the connection stayed open after a cancel while {state}"
            assert fault.disconnected_at is not None and fault.disconnected_at - cancelled < 1.0
    finally:
        backend.close()
        if stalled is not None:
            stalled.close()


def _wait(test, timeout: float) -> bool:  # noqa: ANN001 - a predicate
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.01)
    return False


class _RetryLogged(logging.Handler):
    """Sets an event when the backend logs that it is backing off before a retry."""

    def __init__(self) -> None:
        super().__init__()
        self.backing_off = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retry" in record.getMessage():
            self.backing_off.set()


def test_cancelling_during_back_off_never_counts_as_a_success(fault: FaultServer) -> None:
    fault.mode = "error500"
    breaker = CircuitBreaker(failures=3, cooldown_s=60)
    backend = remote(fault.url, breaker=breaker, backoff_s=5.0)
    handler = _RetryLogged()
    logger = logging.getLogger("codeflow.quant.remote")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for _ in range(8):
            handler.backing_off.clear()
            reader = Reader(backend)
            if handler.backing_off.wait(3.0):
                reader.cancel.cancel()
            assert reader.join(2.0)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert breaker.state == "open"
    assert len(fault.completion_requests()) == 3  # one 500 each, then the open breaker sent nothing


@pytest.mark.parametrize("mode", ["truncated", "malformed"])
def test_an_incomplete_or_malformed_answer_is_never_shown(fault: FaultServer, mode: str) -> None:
    fault.mode = mode
    statuses: list[Status] = []
    s = Settings(backend="remote", remote=settings(fault.url, retries=0))
    backend = FallbackBackend(lambda: RemoteBackend(s.remote, env=ENV), None, statuses.append, primary_kind="remote")
    service = CompletionService(lambda: backend, s)
    req = CompletionRequest(key="k", path="a.py", language="python", prefix="x = ", suffix="")
    try:
        shown = service.complete(req, CancelToken())
        assert shown.text == "", f"a {mode} stream was shown as {shown.text!r}"
        assert service.last.tokens == 2 and service.last.error  # the pieces came, then the failure
        assert statuses[-1].state == "error" and statuses[-1].message.startswith("remote backend failed")
    finally:
        backend.close()


@pytest.mark.parametrize("mode", ["truncated", "malformed"])
def test_an_incomplete_answer_is_never_applied(fault: FaultServer, mode: str) -> None:
    fault.mode = mode
    remote_settings = settings(fault.url, retries=0, chat_model="tiny-model")
    backend = FallbackBackend(lambda: RemoteBackend(remote_settings, chat=True, env=ENV), None,
                              lambda status: None, primary_kind="remote")
    built = instruct.chat_prompt(backend, "Rewrite the code.", "def f(): pass")
    assert isinstance(built, BuiltPrompt)
    try:
        with pytest.raises(RemoteError):
            instruct.generate(backend, built, GenOptions(max_tokens=16), Job(instruct.Stats()))
    finally:
        backend.close()


def test_a_flood_is_cut_at_max_tokens(fault: FaultServer) -> None:
    fault.mode = "flood"
    backend = remote(fault.url)
    started = time.monotonic()
    pieces = list(backend.stream(Prompt(text="def f("), GenOptions(max_tokens=8), CancelToken()))
    assert len(pieces) == 8  # the answer is whole at max_tokens, as with finish_reason "length"
    assert time.monotonic() - started < 3.0
    assert fault.disconnected.wait(1.0), "the flood's stream was left open"
    assert fault.sent_pieces < 5000, f"read {fault.sent_pieces} chunks for an 8-token answer"


def test_a_flood_of_empty_chunks_is_an_error_not_an_answer(fault: FaultServer) -> None:
    fault.mode = "flood_empty"
    started = time.monotonic()
    with pytest.raises(RemoteError, match="chunks"):
        list(remote(fault.url, retries=0).stream(Prompt(text="x"), GenOptions(max_tokens=8), CancelToken()))
    assert time.monotonic() - started < 3.0
    assert fault.sent_pieces < 5000, f"read {fault.sent_pieces} empty chunks for an 8-token answer"


def test_a_drip_is_closed_once_max_tokens_arrived(fault: FaultServer) -> None:
    fault.mode, fault.delay_s = "drip", 0.2
    backend = remote(fault.url)
    pieces = list(backend.stream(Prompt(text="def f("), GenOptions(max_tokens=3), CancelToken()))
    assert pieces == ["w0 ", "w1 ", "w2 "]
    assert fault.disconnected.wait(1.0), "the drip kept its stream open after the answer"


def test_a_drip_past_the_deadline_is_a_timeout(fault: FaultServer) -> None:
    fault.mode, fault.delay_s = "drip", 0.3
    backend = remote(fault.url, completion_deadline_s=1.0)
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError, match="within 1.0s"):
        list(backend.stream(Prompt(text="def f("), GenOptions(max_tokens=100), CancelToken()))
    assert time.monotonic() - started < 2.0


# End to end -------------------------------------------------------------------------------------

SOURCE = "import os\n\n\ndef load_config(path):\n    return open(path).read()\n\n\ncfg = load_config(\n"


@pytest.fixture
def workspace(write_workspace: Callable[[dict[str, str]], Path]) -> Path:
    return write_workspace({"main.py": SOURCE})


def _options(url: str) -> dict:
    return {"backend": "remote", "remote": {"url": url, "model": "tiny-model", "retries": 2,
                                            "completionDeadlineS": 2.0}}


async def _completion(client, uri: str, col: int) -> object:  # noqa: ANN001
    return await client.text_document_inline_completion_async(inline_params(uri, 7, col))


async def test_a_hung_endpoint_starves_nothing(fault: FaultServer, workspace: Path, tmp_path: Path) -> None:
    async with lsp_session(workspace, _options(fault.url), tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        fault.mode = "hang_headers"
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = [asyncio.ensure_future(_completion(client, uri, 18)) for _ in range(8)]
        await asyncio.sleep(0)
        shown = await asyncio.wait_for(client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="codeflow.showContext", arguments=[{"uri": uri, "position": {"line": 7, "character": 18}}])),
            timeout=10)
        assert shown is not None
        assert loop.time() - started < 3.0, "showContext waited behind hung completions"
        results = await asyncio.wait_for(asyncio.gather(*answers), timeout=15)
        assert all(not r or not r.items for r in results)
        assert loop.time() - started < 8.0, "hung completions were not answered within their deadline"
        status = await wait_for_status(client, lambda s: s["state"] == "error", timeout=10)
        assert status["backend"] == "remote" and status["message"].startswith("remote backend failed")


async def test_a_settings_change_during_a_hang_does_not_block_the_loop(
    fault: FaultServer, workspace: Path, tmp_path: Path
) -> None:
    options = _options(fault.url)
    options["remote"]["completionDeadlineS"] = 30.0
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        fault.mode = "hang_headers"
        hung = asyncio.ensure_future(_completion(client, uri, 18))
        await asyncio.wait_for(asyncio.to_thread(_wait, fault.completion_requests, 10.0), timeout=15)
        loop = asyncio.get_running_loop()
        started = loop.time()
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"codeflow": {"remote": {"retries": 1}}}))
        await client.protocol.send_request_async("codeflow/stats", {})
        assert loop.time() - started < 1.0, "the settings change held the event loop"
        await asyncio.wait_for(hung, timeout=10)
