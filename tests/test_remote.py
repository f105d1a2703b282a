"""The remote OpenAI-compatible backend: against a misbehaving stdlib server, then a real llama_cpp.server."""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fault_server import FaultServer

from codeflow.lsp_server.settings import RemoteSettings
from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.breaker import CircuitBreaker
from codeflow.quant.errors import RemoteError, RemoteTimeoutError
from codeflow.quant.fallback import FallbackBackend, Status
from codeflow.quant.remote import ChatMessage, RemoteBackend, api_root
from codeflow.quant.sse import iter_sse_data

KEY = "sk-test-7f3a9c1e5b2d4f60"
ENV = {"CODEFLOW_TEST_KEY": KEY}


def settings(url: str, **kw: object) -> RemoteSettings:
    base = {"url": url, "model": "tiny-model", "api_key_env": "CODEFLOW_TEST_KEY",
            "connect_timeout_s": 2.0, "read_timeout_s": 2.0, "retries": 2}
    return RemoteSettings(**{**base, **kw})  # type: ignore[arg-type]


def remote(url: str, **kw: object) -> RemoteBackend:
    return RemoteBackend(settings(url, **kw), env=ENV, backoff_s=0.01)


def text_of(backend: RemoteBackend, max_tokens: int = 5) -> str:
    return "".join(backend.stream(Prompt(text="def f("), GenOptions(max_tokens=max_tokens), CancelToken()))


def test_streams_completions_and_sends_the_key(fault: FaultServer) -> None:
    backend = remote(fault.url)
    assert backend.info.name == "tiny-model" and backend.info.n_ctx == 1024
    assert backend.info.prompt_kind == "prefix"
    assert text_of(backend) == "w0 w1 w2 w3 w4 "
    request = fault.completion_requests()[-1]
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["body"]["stream"] is True and request["body"]["prompt"] == "def f("
    backend.close()


def test_chat_goes_to_chat_completions(fault: FaultServer) -> None:
    backend = RemoteBackend(settings(fault.url, chat_model="tiny-model"), chat=True, env=ENV)
    assert backend.info.prompt_kind == "chat"
    msgs = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")]
    assert "".join(backend.stream_chat(msgs, GenOptions(max_tokens=3), CancelToken())) == "w0 w1 w2 "
    assert "".join(backend.stream(Prompt(text="explain", kind="chat"), GenOptions(max_tokens=2), CancelToken())) == "w0 w1 "
    bodies = [r["body"] for r in fault.completion_requests()]
    assert all(r["path"] == "/v1/chat/completions" for r in fault.completion_requests())
    assert bodies[1]["messages"] == [{"role": "user", "content": "explain"}]


def test_fim_markers_come_from_settings(fault: FaultServer) -> None:
    backend = remote(fault.url, fim_prefix="<PRE>", fim_suffix="<SUF>", fim_middle="<MID>")
    assert backend.info.prompt_kind == "fim" and backend.info.fim is not None
    assert backend.info.fim.middle == "<MID>"


def test_cancel_closes_the_stream(fault: FaultServer) -> None:
    fault.mode = "endless"
    backend = remote(fault.url)
    cancel = CancelToken()
    pieces = []
    for piece in backend.stream(Prompt(text="x"), GenOptions(max_tokens=10**6), cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.cancel()
    assert len(pieces) == 3
    assert fault.disconnected.wait(5.0), "the server kept streaming to a cancelled client"


def test_500s_are_retried_before_the_first_token(fault: FaultServer) -> None:
    fault.mode, fault.failures = "error500", 2
    backend = remote(fault.url, retries=2)
    assert text_of(backend) == "w0 w1 w2 w3 w4 "
    assert len(fault.completion_requests()) == 3


def test_persistent_500_is_a_clear_error_and_opens_the_breaker(fault: FaultServer) -> None:
    fault.mode = "error500"
    backend = RemoteBackend(settings(fault.url, retries=1), env=ENV, backoff_s=0.01,
                            breaker=CircuitBreaker(failures=2, cooldown_s=60))
    for _ in range(2):
        with pytest.raises(RemoteError) as err:
            text_of(backend)
        message = str(err.value)
        assert f"{api_root(fault.url)}/v1/completions" in message and "HTTP 500" in message
        assert "CUDA error: out of memory" in message
    sent = len(fault.completion_requests())
    assert sent == 4  # two calls, each tried twice
    with pytest.raises(RemoteError, match="failures in a row"):
        text_of(backend)
    assert len(fault.completion_requests()) == sent  # the open breaker sent nothing


def test_429_is_retried_then_reported(fault: FaultServer) -> None:
    fault.mode = "error429"
    with pytest.raises(RemoteError, match="HTTP 429"):
        text_of(remote(fault.url, retries=2))
    assert len(fault.completion_requests()) == 3


def test_slow_first_byte_times_out(fault: FaultServer) -> None:
    fault.mode, fault.delay_s = "slow", 1.5
    backend = remote(fault.url, read_timeout_s=0.3, retries=1)
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError, match="within 0.3s"):
        text_of(backend)
    assert time.monotonic() - started < fault.delay_s * 2
    assert len(fault.completion_requests()) == 2


def test_truncated_stream_is_an_error(fault: FaultServer) -> None:
    fault.mode = "truncated"
    backend = remote(fault.url)
    got: list[str] = []
    with pytest.raises(RemoteError, match=r"ended without \[DONE\] after 2 pieces"):
        for piece in backend.stream(Prompt(text="x"), GenOptions(), CancelToken()):
            got.append(piece)
    assert got == ["w0 ", "w1 "]
    assert len(fault.completion_requests()) == 1  # pieces were out: no silent retry


def test_dropped_connection_mid_stream_is_an_error(fault: FaultServer) -> None:
    fault.mode = "drop"
    with pytest.raises(RemoteError, match="connection to .* failed"):
        text_of(remote(fault.url))


def test_error_event_in_stream(fault: FaultServer) -> None:
    fault.mode = "stream_error"
    with pytest.raises(RemoteError, match="context overflow"):
        text_of(remote(fault.url))


def test_wrong_model_name_is_a_clear_error(fault: FaultServer) -> None:
    with pytest.raises(RemoteError, match=r"model 'nope' is not served by .*tiny-model"):
        remote(fault.url, model="nope")


def test_unreachable_server_and_missing_key() -> None:
    dead = FaultServer()
    dead.close()
    backend = remote(dead.url, retries=1)
    assert backend.info.name == "tiny-model"  # from the settings, since /v1/models was unreachable
    with pytest.raises(RemoteError, match="cannot connect to http://127.0.0.1"):
        text_of(backend)
    with pytest.raises(RemoteError, match="CODEFLOW_TEST_KEY .* is not set"):
        RemoteBackend(settings(dead.url), env={})
    with pytest.raises(RemoteError, match="must name an environment variable") as err:
        RemoteBackend(settings(dead.url, api_key_env=f"Bearer {KEY}"), env=ENV)
    assert KEY not in str(err.value)


def test_remote_outage_falls_back_quietly(fault: FaultServer) -> None:
    statuses: list[Status] = []
    backend = remote(fault.url)
    fb = FallbackBackend(lambda: backend, None, statuses.append, primary_kind="remote")
    assert "".join(fb.stream(Prompt(text="x"), GenOptions(), CancelToken())) == "w0 w1 w2 w3 w4 "
    fault.mode = "error500"
    for _ in range(3):
        assert "".join(fb.stream(Prompt(text="x"), GenOptions(), CancelToken())) == ""
    assert statuses[-1].backend == "remote" and statuses[-1].state == "error"
    assert "HTTP 500" in statuses[-1].message


def test_count_tokens_uses_the_server(fault: FaultServer) -> None:
    backend = remote(fault.url)
    assert backend.count_tokens("a b c d") == 4


def test_key_never_reaches_the_logs(fault: FaultServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = remote(fault.url)
    text_of(backend)
    fault.mode = "error500"
    with pytest.raises(RemoteError) as err:
        text_of(backend)
    logging.getLogger("someone.careless").warning("headers: %s", {"Authorization": f"Bearer {KEY}"})
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        logging.getLogger("someone.careless").exception("failed")
    assert KEY not in str(err.value)
    assert any("httpx" in r.name for r in caplog.records), "httpx debug logs were not captured"
    assert "[redacted]" in caplog.text
    assert KEY not in caplog.text
    assert all(KEY not in r.getMessage() for r in caplog.records)



def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server = FaultServer(tls=(str(cert), str(key)))
    try:
        backend = remote(server.url, retries=0)
        with pytest.raises(RemoteError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            text_of(backend)
        assert not server.completion_requests()
        assert text_of(remote(server.url, verify_tls=False)) == "w0 w1 w2 w3 w4 "
    finally:
        server.close()

def test_breaker_half_opens_after_the_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state == "open" and breaker.retry_in() == 10.0
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0


def test_sse_events_are_parsed_as_the_spec_says() -> None:
    lines = [": keep-alive", "data: {\"a\":", "data: 1}", "", "event: x", "data:[DONE]", ""]
    assert list(iter_sse_data(lines)) == ['{"a":\n1}', "[DONE]"]
    assert list(iter_sse_data(["data: tail"])) == ["tail"]

# --- against a real `python -m llama_cpp.server` -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL when the test process dies, so none is left running."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # uvicorn waits for a running generation on SIGTERM; do not wait for it long.
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_llama_server(model: Path, log_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny",
           "--host", "127.0.0.1", "--port", str(port), "--api_key", KEY, "--n_ctx", "2048",
           "--n_threads", "1"]
    with log_file.open("wb") as log:
        hook = _die_with_parent if sys.platform.startswith("linux") else None
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=hook)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log_file.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail("llama_cpp.server did not start within 90s")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("llama_cpp.server.app")
    from gguf_factory import write_tiny_gguf

    # No newline and no end-of-text: the stream only stops at max_tokens or on cancel.
    return write_tiny_gguf(tmp_path_factory.mktemp("llama") / "tiny.gguf", newline=False, eos=False, byte_output=False)


@pytest.fixture(scope="module")
def llama_server(tiny_model: Path) -> Iterator[str]:
    proc, url = _start_llama_server(tiny_model, tiny_model.with_suffix(".log"))
    yield url
    _stop(proc)


def _established_to(port: int) -> int:
    conns = psutil.Process().net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_real_server_streams_with_the_key(llama_server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = RemoteBackend(settings(llama_server, model="tiny"), env=ENV)
    assert backend.info.name == "tiny"
    pieces = list(backend.stream(Prompt(text="def login(user):"), GenOptions(max_tokens=8), CancelToken()))
    assert 1 <= len(pieces) <= 8 and "".join(pieces).strip()
    assert backend.count_tokens("def login(user):") > 0
    assert KEY not in caplog.text
    backend.close()


def test_real_server_rejects_a_wrong_key(llama_server: str) -> None:
    wrong = "sk-wrong-0123456789"
    with pytest.raises(RemoteError, match=r"HTTP 401 .*CODEFLOW_TEST_KEY") as err:
        RemoteBackend(settings(llama_server, model="tiny"), env={"CODEFLOW_TEST_KEY": wrong})
    assert wrong not in str(err.value) and api_root(llama_server) in str(err.value)


def test_real_server_wrong_model_name(llama_server: str) -> None:
    with pytest.raises(RemoteError, match=r"model 'qwen-coder' is not served .*\['tiny'\]"):
        RemoteBackend(settings(llama_server, model="qwen-coder"), env=ENV)


def test_real_server_cancel_closes_the_connection(llama_server: str) -> None:
    backend = RemoteBackend(settings(llama_server, model="tiny"), env=ENV)
    port = httpx.URL(llama_server).port
    assert port is not None
    cancel = CancelToken()
    open_while_streaming = 0
    for i, _ in enumerate(backend.stream(Prompt(text="x"), GenOptions(max_tokens=1500), cancel)):
        if i == 3:
            open_while_streaming = _established_to(port)
            cancel.cancel()
    assert open_while_streaming == 1
    assert _established_to(port) == 0
    # The server is free again at once: a short request is answered.
    assert list(backend.stream(Prompt(text="y"), GenOptions(max_tokens=2), CancelToken()))


def test_real_server_killed_mid_stream(tiny_model: Path, tmp_path: Path) -> None:
    proc, url = _start_llama_server(tiny_model, tmp_path / "killed.log")
    try:
        backend = RemoteBackend(settings(url, model="tiny", retries=1), env=ENV, backoff_s=0.01)
        pieces = backend.stream(Prompt(text="x"), GenOptions(max_tokens=1500), CancelToken())
        next(pieces)
        proc.kill()
        with pytest.raises(RemoteError, match=f"{api_root(url)}/v1/completions"):
            for _ in pieces:
                pass
        with pytest.raises(RemoteError, match="cannot connect"):
            list(backend.stream(Prompt(text="x"), GenOptions(max_tokens=2), CancelToken()))
    finally:
        _stop(proc)
