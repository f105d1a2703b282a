"""Issue 12, protocol: every request is answered, garbage on the wire is survived, a lost client
ends the server. Raw bytes over a real `codeflow serve` subprocess's stdio."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire import WireServer, frame

SOURCE = "import os\n\n\ndef load_config(path):\n    with open(path) as fh:\n        return fh.read()\n"


def quiet(models_dir: Path) -> dict[str, Any]:
    """Settings for protocol tests: a tiny model (loaded at start), nothing generated."""
    return {"model": {"path": str(models_dir / "base.gguf"), "chatPath": str(models_dir / "chat.gguf")},
            "completion": {"enabled": False}, "hover": {"enabled": False}}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("ws")
    (ws / "main.py").write_text(SOURCE)
    return ws


@pytest.fixture(scope="module")
def server(root: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WireServer]:
    """One initialized server for the request-level cases (each answer is checked by id)."""
    srv = WireServer(tmp_path_factory.mktemp("home"))
    srv.initialize(root, quiet(models_dir))
    yield srv
    srv.close()


def _hover(root: Path, position: object = None, drop: str = "") -> dict[str, Any]:
    params: dict[str, Any] = {"textDocument": {"uri": (root / "main.py").as_uri()},
                              "position": {"line": 3, "character": 4} if position is None else position}
    params.pop(drop, None)
    return params


BAD_PARAMS = [
    ("negative line", {"line": -1, "character": 0}, "", "line"),
    ("line of 2**31", {"line": 2**31, "character": 0}, "", "line"),
    ("null position", "null", "", "position"),
    ("missing position", None, "position", "position"),
    ("string line", {"line": "3", "character": 0}, "", "line"),
    ("float character", {"line": 1, "character": 0.5}, "", "character"),
]


@pytest.mark.parametrize(("case", "position", "drop", "field"), BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_params_are_answered_with_invalid_params(
    server: WireServer, root: Path, case: str, position: object, drop: str, field: str
) -> None:
    params = _hover(root, None if position == "null" else position, drop)
    if position == "null":
        params["position"] = None
    answer = server.call(f"bad-{case}", "textDocument/hover", params)
    assert answer["error"]["code"] == -32602, answer
    assert field in answer["error"]["message"], answer


def test_missing_params_and_wrong_types_are_answered(server: WireServer, root: Path) -> None:
    cases = {
        "no-params": ("textDocument/completion", None),
        "params-list": ("textDocument/hover", [1, 2]),
        "line-list": ("textDocument/hover",
                      {"textDocument": {"uri": "file:///a.py"}, "position": {"line": [], "character": 0}}),
        "command-args": ("workspace/executeCommand", {"command": 7}),
    }
    for msg_id, (method, params) in cases.items():
        answer = server.call(msg_id, method, params)
        assert answer["error"]["code"] == -32602, answer
    assert "params" in server.responses("no-params")[0]["error"]["message"]


def test_notification_method_sent_as_request_is_answered(server: WireServer) -> None:
    answer = server.call("as-request", "textDocument/didSave", {"textDocument": {"uri": "file:///x.py"}})
    assert answer["error"]["code"] == -32600, answer


def test_invalid_params_pop_up_once(root: Path, models_dir: Path, tmp_path: Path) -> None:
    srv = WireServer(tmp_path)
    try:
        srv.initialize(root, quiet(models_dir))
        for i in range(12):
            srv.call(f"storm-{i}", "textDocument/hover", _hover(root, {"line": -1, "character": 0}))
        srv.call("after-storm", "codeflow/stats", {})
        shown = srv.notifications("window/showMessage")
        assert len(shown) <= 1, shown
        logged = [m for m in srv.notifications("window/logMessage") if "position" in m["params"]["message"]]
        assert len(logged) >= 12
    finally:
        srv.close()


def test_show_context_bad_arguments_are_invalid_params(server: WireServer, root: Path) -> None:
    uri = (root / "main.py").as_uri()
    bad = {
        "ctx-none": [],
        "ctx-string": ["nope"],
        "ctx-no-position": [{"uri": uri}],
        "ctx-negative-line": [{"uri": uri, "position": {"line": -1, "character": 0}}],
        "ctx-missing-file": [{"uri": (root / "gone.py").as_uri(), "position": {"line": 0, "character": 0}}],
    }
    for msg_id, arguments in bad.items():
        params = {"command": "codeflow.showContext", "arguments": arguments}
        answer = server.call(msg_id, "workspace/executeCommand", params)
        error = answer["error"]
        assert error["code"] == -32602, answer
        assert "codeflow.showContext" in error["message"] or "gone.py" in error["message"], answer
        assert "Traceback" not in json.dumps(error) and not error.get("data"), answer


def test_requests_after_shutdown_get_invalid_request(root: Path, models_dir: Path, tmp_path: Path) -> None:
    srv = WireServer(tmp_path)
    try:
        srv.initialize(root, quiet(models_dir))
        assert "error" not in srv.call("first-shutdown", "shutdown")
        answer = srv.call("late", "textDocument/hover", _hover(root))
        assert answer["error"]["code"] == -32600, answer
    finally:
        srv.close()


# Wire garbage, each followed by a valid request that must be answered. `null` lists the errors
# sent with id null (-32700 unparsable, -32600 not a request object); `lost` is what the request
# inside the garbage ("lost") gets: its result, -32600 when its framing was wrong, or nothing.
def _valid(n: int) -> bytes:
    return frame({"jsonrpc": "2.0", "id": f"ok-{n}", "method": "codeflow/stats", "params": {}})


BODY = json.dumps({"jsonrpc": "2.0", "id": "lost", "method": "codeflow/stats", "params": {}}).encode()
GARBAGE = [
    ("lowercase header", b"content-length: %d\r\n\r\n" % len(BODY) + BODY, [], "result"),
    ("LF-only lines", b"Content-Length: %d\n\n" % len(BODY) + BODY, [], "result"),
    ("extra headers", b"Content-Type: application/vscode-jsonrpc\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
     [], "result"),
    ("length too short", b"Content-Length: 10\r\n\r\n" + BODY, [-32700], None),
    ("length too long", b"Content-Length: 400\r\n\r\n" + BODY, [], -32600),
    ("non-numeric length", b"Content-Length: abc\r\n\r\n" + BODY, [-32700], -32600),
    ("negative length", b"Content-Length: -5\r\n\r\n" + BODY, [-32700], -32600),
    ("body without header", BODY, [], -32600),
    ("header without length", b"Content-Type: x\r\n\r\n" + BODY, [], -32600),
    ("text line", b"hello there\r\n", [-32700], None),
    ("NUL bytes", b"\0" * 100, [-32700], None),
    ("huge length", b"Content-Length: 99999999999\r\n\r\n" + BODY, [-32600], -32600),
    ("invalid JSON", b"Content-Length: 9\r\n\r\n{not json", [-32700], None),
    ("non-object JSON", b"Content-Length: 2\r\n\r\n42", [-32600], None),
    ("batch array", b"Content-Length: %d\r\n\r\n[%s]" % (len(BODY) + 2, BODY), [-32600], None),
    ("empty batch", b"Content-Length: 2\r\n\r\n[]", [-32600], None),
]


@pytest.mark.parametrize(("case", "garbage", "null", "lost"), GARBAGE, ids=[g[0] for g in GARBAGE])
def test_wire_garbage_then_a_valid_request(root: Path, models_dir: Path, tmp_path: Path, case: str, garbage: bytes,
                                           null: list[int], lost: object) -> None:
    srv = WireServer(tmp_path)
    try:
        srv.initialize(root, quiet(models_dir))
        srv.send_raw(garbage + _valid(1))
        assert "result" in srv.response("ok-1", timeout=10.0), case
        # Still in sync afterwards, and a clean shutdown.
        assert "result" in srv.call("ok-2", "codeflow/stats", {})
        codes = [m["error"]["code"] for m in srv.messages if "error" in m and "id" in m and m["id"] is None]
        assert codes == null, srv.messages[-4:]
        answers = srv.responses("lost")
        if lost is None:
            assert answers == []
        else:
            assert len(answers) == 1 and ("result" if "result" in answers[0] else answers[0]["error"]["code"]) == lost
        assert "result" in srv.call("bye", "shutdown")
        assert srv.proc.poll() is None
    finally:
        srv.close()
    assert srv.proc.returncode == 0


def test_framer_resynchronises_on_split_input() -> None:
    """The same stream fed one byte at a time yields the same messages."""
    from codeflow.lsp_server.framing import Framer

    stream = b"garbage" + frame({"a": 1}) + b"content-length: 7\n\n{\"b\":2}" + b"Content-Length: 3\r\n\r\n[1]"
    whole = Framer().feed(stream)
    framer = Framer()
    pieces = [f for i in range(len(stream)) for f in framer.feed(stream[i:i + 1])]
    assert pieces == whole
    assert [f.message for f in whole if not f.error] == [{"a": 1}, {"b": 2}, [1]]
    assert [f.skipped for f in whole if f.error] == [b"garbage"]


FRAGMENTS = [b"Content-Length: ", b"content-length:3\r\n", b"Content-Length: 99999999999\r\n", b"\r\n", b"\n",
             b"Content-Type: x\r\n", b"{", b"}", b'{"jsonrpc": "2.0", "id": 9}', b"abc", b"\0", b"Content-Length: 40\r\n\r\n"]


@settings(max_examples=300, deadline=None, database=None)
@given(garbage=st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=12), max_size=6),
       messages=st.lists(st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=6), max_size=3),
                         min_size=1, max_size=3),
       cuts=st.lists(st.integers(1, 40), max_size=20))
def test_framer_finds_every_message_after_any_garbage(garbage: list[bytes], messages: list[dict],
                                                      cuts: list[int]) -> None:
    """Whatever precedes them, well-framed messages come out, however the bytes are split."""
    from codeflow.lsp_server.framing import Framer

    stream = b"".join(garbage) + b"".join(frame(m) for m in messages)
    framer, out, pos = Framer(), [], 0
    for cut in [*cuts, len(stream)]:
        out += framer.feed(stream[pos:pos + cut] if cut != len(stream) else stream[pos:])
        pos = min(len(stream), pos + cut)
    decoded = [f.message for f in out if not f.error]
    assert decoded[len(decoded) - len(messages):] == messages


def test_client_closing_stdout_mid_generation_ends_server_and_worker(models_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "main.py").write_text(SOURCE)
    srv = WireServer(tmp_path)
    try:
        options = {"model": {"path": str(models_dir / "endless.gguf")},
                   "completion": {"maxTokens": 100000, "maxTokensInvoked": 100000, "backgroundTokens": 0}}
        srv.initialize(root, options)
        srv.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": (root / "main.py").as_uri(), "languageId": "python", "version": 1, "text": SOURCE}}})
        srv.request("gen", "textDocument/inlineCompletion", {
            "textDocument": {"uri": (root / "main.py").as_uri()}, "position": {"line": 5, "character": 8},
            "context": {"triggerKind": 1}})
        worker = _generating_worker(srv.proc.pid)
        assert srv.proc.stdout is not None
        srv.stop_reading()
        srv.proc.stdout.close()
        gone, alive = psutil.wait_procs([psutil.Process(srv.proc.pid), worker], timeout=5.0)
        assert not alive, f"still running 5 s after the client closed stdout: {alive}"
    finally:
        srv.close()


def _generating_worker(server_pid: int, timeout: float = 60.0) -> psutil.Process:
    """The server's model worker, once it has used CPU time for generation (not only loading)."""
    deadline = time.monotonic() + timeout
    baseline: dict[int, float] = {}
    while time.monotonic() < deadline:
        for child in psutil.Process(server_pid).children(recursive=True):
            try:
                cpu = sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                continue
            if child.pid in baseline and cpu - baseline[child.pid] > 1.0:
                return child
            baseline.setdefault(child.pid, cpu)
        time.sleep(0.1)
    raise TimeoutError("the worker never started generating")
