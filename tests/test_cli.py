"""The `codeflow` command line: version, serve over TCP, complete's errors, doctor."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "codeflow.lsp_server.cli"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("codeflow ")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nofile.py", "expected FILE:LINE:COL"),
        ("nofile.py:1:1", "cannot read"),
        ("{py}:0:1", "1-based"),
        ("{py}:99:1", "past the end"),
        ("{py}:1:99", "past its end"),
        ("{bin}:1:1", "binary"),
        ("{latin}:1:1", "not UTF-8"),
    ],
)
def test_complete_rejects_bad_input_clearly(tmp_path: Path, target: str, message: str) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "c.py").write_bytes("caf\xe9 = 1\n".encode("latin-1"))
    spec = target.format(py=tmp_path / "a.py", bin=tmp_path / "b.bin", latin=tmp_path / "c.py")
    proc = run("complete", spec, "--workspace", str(tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_complete_reports_a_missing_model(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    proc = run("complete", f"{tmp_path / 'a.py'}:1:5", "--model", str(tmp_path / "none.gguf"), "--no-context")
    assert proc.returncode == 1
    assert "none.gguf" in proc.stderr and "Traceback" not in proc.stderr


def test_complete_json_with_a_tiny_model(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "a.py").write_text("def f(x):\n    return \n")
    proc = run("complete", f"{tmp_path / 'a.py'}:2:12", "--model", str(models_dir / "fim.gguf"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["prompt_kind"] == "fim" and out["tokens"] > 0
    assert set(out) >= {"text", "prompt_kind", "model", "tokens", "seconds"}


def test_doctor_lists_libraries_and_hardware() -> None:
    proc = run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert checks["pygls"]["ok"] and checks["llama-cpp-python"]["ok"]
    assert "CPU" in checks["hardware"]["detail"] or "GiB" in checks["hardware"]["detail"]
    assert proc.returncode == (0 if all(c["ok"] for c in checks.values()) else 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frame(payload: dict) -> bytes:
    body = json.dumps(payload).encode()
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def test_serve_over_tcp_answers_initialize(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([*CLI, "serve", "--tcp", f"127.0.0.1:{port}", "--log-file", str(tmp_path / "log")])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            conn.sendall(_frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                 "params": {"processId": None, "rootUri": None, "capabilities": {}}}))
            data = b""
            while b"inlineCompletionProvider" not in data:
                chunk = conn.recv(65536)
                assert chunk, "server closed the connection"
                data += chunk
        assert b'"id": 1' in data or b'"id":1' in data
    finally:
        server.kill()
        server.wait()


def test_serve_rejects_a_bad_address() -> None:
    proc = run("serve", "--tcp", "nowhere")
    assert proc.returncode != 0 and "HOST:PORT" in proc.stderr


def test_serve_refuses_a_public_address_without_the_opt_in() -> None:
    proc = run("serve", "--tcp", f"0.0.0.0:{_free_port()}", timeout=30)
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0" in proc.stderr and "--allow-remote-clients" in proc.stderr


def test_serve_on_a_public_address_with_the_opt_in_warns_and_listens(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([*CLI, "serve", "--tcp", f"0.0.0.0:{port}", "--allow-remote-clients",
                               "--log-file", str(tmp_path / "log")], stderr=subprocess.PIPE, text=True)
    try:
        warning = server.stderr.readline()
        assert "WARNING: listening on 0.0.0.0 with no authentication" in warning
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=30).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.2)
    finally:
        server.kill()
        server.wait()
