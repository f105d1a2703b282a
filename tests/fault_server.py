"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 that misbehaves on purpose, for remote tests.

It makes the faults a real server will not make on demand: 5xx answers, a first byte slower than
the client's timeout, an SSE stream cut short, a connection dropped mid-chunk, an endpoint that
hangs (before its headers, or mid-stream), drips one token a second, floods chunks past
`max_tokens`, or sends malformed chunks (issue 12). `StalledListener` is an endpoint whose TCP
connect itself hangs.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    """Serves `/v1/models`, `/v1/completions`, `/v1/chat/completions` and `/tokenize`.

    `mode` picks the behaviour: ok, error500 (the first `failures` requests), error429, slow,
    truncated, drop, endless, stream_error, hang_headers (never answers), hang_stream (two
    pieces, then silence), drip (a piece every `delay_s`, no end), flood (pieces as fast as the
    socket takes them, no end; flood_empty: the same with empty pieces), malformed (two pieces,
    then a cut JSON chunk, then [DONE]).
    Requests and disconnects are recorded; `disconnected_at` is when the client went away.
    """

    def __init__(self, model: str = "tiny-model", tls: tuple[str, str] | None = None) -> None:
        self.model = model
        self.mode = "ok"
        self.failures = 10**9
        self.delay_s = 0.0
        # When set, an "ok" stream sends this text (in small pieces) instead of "w0 w1 ...".
        self.answer: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.disconnected = threading.Event()
        self.disconnected_at: float | None = None
        # Pieces sent by the last streamed answer (a flood's count shows client-side limits).
        self.sent_pieces = 0
        handler = type("Handler", (_Handler,), {"fault": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:  # (certificate file, key file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def completion_requests(self) -> list[dict[str, Any]]:
        """The recorded POSTs to a completions route."""
        return [r for r in self.requests if r["path"].endswith("completions")]

    def gone(self) -> None:
        """Record that the client closed its end of the connection."""
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


class StalledListener:
    """An endpoint whose TCP connect hangs: `/v1/models` is answered once (with `Connection:
    close`, so the client keeps no connection), then the listen backlog is filled and never
    accepted, so the kernel drops every later SYN and a client sits in `connect()`."""

    def __init__(self, model: str = "tiny-model") -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self._fillers: list[socket.socket] = []
        self._model = model
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self.served = threading.Event()
        threading.Thread(target=self._serve_once, daemon=True).start()

    def _serve_once(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(65536)
            data = json.dumps({"object": "list", "data": [{"id": self._model}]}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        self._fill()
        self.served.set()

    def _fill(self) -> None:
        """Queue connections nobody accepts until the backlog is full (a connect then blocks)."""
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex(self._sock.getsockname())
            self._fillers.append(filler)
        time.sleep(0.2)  # let the handshakes of the fillers land in the queue

    def close(self) -> None:
        """Stop listening and drop the queued connections."""
        for filler in self._fillers:
            filler.close()
        self._sock.close()


class _Handler(BaseHTTPRequestHandler):
    fault: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._record(None)
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.fault.model, "max_model_len": 1024}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self._record(body)
        if self.path == "/tokenize":
            self._json(200, {"tokens": list(range(len(body.get("prompt", "").split())))})
            return
        if not self.path.endswith("completions"):
            self._json(404, {"detail": "Not Found"})
            return
        self._complete(body, chat=self.path.endswith("chat/completions"))

    def _record(self, body: Any) -> None:
        self.fault.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})

    def _complete(self, body: dict[str, Any], chat: bool) -> None:
        fault, mode = self.fault, self.fault.mode
        if mode == "hang_headers":
            self._hang()
        elif mode == "error500" and len(fault.completion_requests()) <= fault.failures:
            self._json(500, {"error": {"message": "CUDA error: out of memory"}})
        elif mode == "error429":
            self._json(429, {"error": {"message": "too many requests"}}, {"Retry-After": "0"})
        elif body.get("model") != fault.model:
            self._json(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
        else:
            if mode == "slow":
                time.sleep(fault.delay_s)
            self._stream(body, chat, mode)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _hang(self) -> None:
        """Send nothing more, and record when the client gives up (its FIN reads as b"")."""
        self.connection.settimeout(0.05)
        while True:
            try:
                if not self.connection.recv(1):
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        self.fault.gone()
        self.close_connection = True

    def _event(self, payload: Any) -> None:
        data = f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, body: dict[str, Any], chat: bool, mode: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        count = 10**6 if mode in ("endless", "drip", "flood", "flood_empty") else min(int(body.get("max_tokens", 5)), 5)
        if self.fault.answer is not None and mode == "ok":
            self._answer(self.fault.answer, chat)
            return
        self.fault.sent_pieces = 0
        try:
            for i in range(count):
                if mode == "hang_stream" and i == 2:
                    self._hang()
                    return
                if mode == "malformed" and i == 2:
                    self._event('{"choices": [{"index": 0, "text": "tok')  # a JSON object cut short
                    break
                if mode == "truncated" and i == 2:
                    self.wfile.write(b"0\r\n\r\n")  # a clean end of body, but no [DONE]
                    return
                if mode == "drop" and i == 2:
                    self.wfile.write(b"400\r\ndata: {\"cho")  # chunk promises more than it sends
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "stream_error" and i == 1:
                    self._event({"error": {"message": "context overflow"}})
                    break
                word = "" if mode == "flood_empty" else f"w{i} "
                piece = {"delta": {"content": word}} if chat else {"text": word}
                self._event({"choices": [{"index": 0, **piece, "finish_reason": None}]})
                self.fault.sent_pieces += 1
                if mode == "endless":
                    time.sleep(0.02)
                elif mode == "drip":
                    time.sleep(self.fault.delay_s)
            self._event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.fault.gone()

    def _answer(self, text: str, chat: bool) -> None:
        try:
            for start in range(0, len(text), 8):
                piece = text[start:start + 8]
                delta = {"delta": {"content": piece}} if chat else {"text": piece}
                self._event({"choices": [{"index": 0, **delta, "finish_reason": None}]})
            self._event({"choices": [{"index": 0, "finish_reason": "stop", **({"delta": {}} if chat else {"text": ""})}]})
            self._event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.fault.gone()
