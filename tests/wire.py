"""A raw-bytes LSP client for `codeflow serve`: it can send what no well-behaved client would."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from lsp_session import SERVER, isolated_env


def frame(message: object) -> bytes:
    """A message with the standard `Content-Length` header."""
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class WireServer:
    """`codeflow serve` on pipes; a thread reads its (well-framed) output into `messages`."""

    def __init__(self, home: Path) -> None:
        self.log_path = home / "server.log"
        self.proc = subprocess.Popen(
            [*SERVER, "--log-file", str(self.log_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=isolated_env(home),
        )
        self.messages: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                length = 0
                while (line := stdout.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                if not line:
                    return
                message = json.loads(stdout.read(length))
                with self._changed:
                    self.messages.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            return

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: object) -> None:
        """Write one framed message."""
        self.send_raw(frame(message))

    def request(self, msg_id: int | str, method: str, params: object = None) -> None:
        """Send a request (without `params` when they are None)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def responses(self, msg_id: object) -> list[dict[str, Any]]:
        """Every response received so far for an id (a result or an error)."""
        with self._changed:
            return [m for m in self.messages if "method" not in m and "id" in m and m["id"] == msg_id
                    and type(m["id"]) is type(msg_id)]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until `predicate(messages)` is truthy; returns the messages (raises on timeout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0 or not self._changed.wait(left):
                    if not predicate(self.messages):
                        raise TimeoutError(f"no matching message in {timeout} s; last: {self.messages[-3:]}")
            return list(self.messages)

    def response(self, msg_id: int | str, timeout: float = 10.0) -> dict[str, Any]:
        """The response for an id, waiting for it."""
        self.wait_for(lambda _: self.responses(msg_id), timeout)
        return self.responses(msg_id)[0]

    def call(self, msg_id: int | str, method: str, params: object = None, timeout: float = 10.0) -> dict[str, Any]:
        """Send a request and wait for its response."""
        self.request(msg_id, method, params)
        return self.response(msg_id, timeout)

    def initialize(self, root: Path, options: dict[str, Any]) -> dict[str, Any]:
        """The initialize handshake."""
        params = {"processId": None, "rootUri": root.as_uri(), "capabilities": {},
                  "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                  "initializationOptions": options}
        answer = self.call("init", "initialize", params, timeout=30.0)
        self.send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        return answer

    def notifications(self, method: str) -> list[dict[str, Any]]:
        """Every notification of one method received so far."""
        with self._changed:
            return [m for m in self.messages if m.get("method") == method and "id" not in m]

    def close(self) -> None:
        """Shut down politely, then make sure the process is gone."""
        try:
            if self.proc.poll() is None:
                self.call("close-shutdown", "shutdown", timeout=10.0)
                self.send({"jsonrpc": "2.0", "method": "exit"})
                self.proc.wait(timeout=10.0)
        except (OSError, TimeoutError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
