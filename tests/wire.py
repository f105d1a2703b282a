"""A raw-bytes LSP client for `codeflow serve`: it can send what no well-behaved client would."""

from __future__ import annotations

import json
import os
import select
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


def _take_frame(data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """The first whole message in `data` and the bytes after it, or None when none is whole."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(rest) < length:
        return None
    return json.loads(rest[:length]), rest[length:]


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
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Read frames until EOF or `stop_reading`; polls, so that it never sits inside a blocking
        read on the pipe (closing a pipe that another thread reads from blocks until it returns)."""
        stdout = self.proc.stdout
        assert stdout is not None
        fd, data = stdout.fileno(), b""
        while not self._stop.is_set():
            try:
                if not select.select([fd], [], [], 0.05)[0]:
                    continue
                chunk = os.read(fd, 65536)
            except (OSError, ValueError):  # the pipe was closed under us
                return
            if not chunk:
                return
            data += chunk
            while (message := _take_frame(data)) is not None:
                data = message[1]
                with self._changed:
                    self.messages.append(message[0])
                    self._changed.notify_all()

    def stop_reading(self) -> None:
        """End the reader thread (before the test closes the server's stdout itself)."""
        self._stop.set()
        self._reader.join(timeout=5)

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
            self.stop_reading()
            for pipe in (self.proc.stdin, self.proc.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
