"""A fake Hugging Face hub on 127.0.0.1: the resolve/HEAD protocol `hf_hub_download` uses.

Two servers, as on the real hub: the hub answers `HEAD|GET /{repo}/resolve/{revision}/{file}`
with a 302 to a storage host (another port, so huggingface_hub treats it as a CDN and reads the
file's metadata from the redirect: X-Repo-Commit, X-Linked-Etag = the sha256 of an LFS file,
X-Linked-Size); the storage host serves the bytes and honours `Range` (206), which is how a cut
download resumes. Faults: `cut_after` closes the first body after that many bytes; `corrupt`
serves bytes that differ from the announced sha256. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """`with FakeHub({("org/repo", "file.gguf"): data}) as hub:` then HF_ENDPOINT=hub.url."""

    def __init__(self, files: dict[tuple[str, str], bytes], *, cut_after: int | None = None,
                 corrupt: bool = False) -> None:
        self.files = files
        self.blobs = {hashlib.sha256(d).hexdigest(): d for d in files.values()}
        self.cut_after = cut_after
        self.corrupt = corrupt
        self.requests: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._resolve))
        self._cdn = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(self._blob))

    @property
    def url(self) -> str:
        """The hub's address, for HF_ENDPOINT."""
        return f"http://127.0.0.1:{self._hub.server_address[1]}"

    def __enter__(self) -> FakeHub:
        for server in (self._hub, self._cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._hub, self._cdn):
            server.shutdown()
            server.server_close()

    def ranges(self) -> list[str]:
        """The Range headers of the storage GETs, in order ("" for a whole-file GET)."""
        return [r for m, path, r in self.requests if m == "GET" and path.startswith("/blobs/")]

    def _handler(self, route):  # noqa: ANN001, ANN202 - a handler class bound to one route
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                hub._record(self)
                route(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._record(self)
                route(self, body=True)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _record(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((req.command, req.path, req.headers.get("Range", "")))

    def _resolve(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        parts = unquote(req.path.split("?")[0]).lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(req, 404, "RepoNotFound")
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if not any(r == repo for r, _ in self.files):
            return self._error(req, 404, "RepoNotFound")
        if revision not in ("main", COMMIT):
            return self._error(req, 404, "RevisionNotFound")
        data = self.files.get((repo, name))
        if data is None:
            return self._error(req, 404, "EntryNotFound")
        sha = hashlib.sha256(data).hexdigest()
        req.send_response(302)
        req.send_header("Location", f"http://127.0.0.1:{self._cdn.server_address[1]}/blobs/{sha}")
        req.send_header("X-Repo-Commit", COMMIT)
        req.send_header("X-Linked-Etag", f'"{sha}"')
        req.send_header("X-Linked-Size", str(len(data)))
        req.send_header("ETag", f'"{sha}"')
        req.send_header("Content-Length", "0")
        req.end_headers()

    def _error(self, req: BaseHTTPRequestHandler, status: int, code: str) -> None:
        req.send_response(status)
        req.send_header("X-Error-Code", code)
        req.send_header("X-Repo-Commit", COMMIT)
        req.send_header("Content-Length", "0")
        req.end_headers()

    def _blob(self, req: BaseHTTPRequestHandler, body: bool) -> None:
        data = self.blobs.get(req.path.split("?")[0].removeprefix("/blobs/"))
        if data is None:
            return self._error(req, 404, "EntryNotFound")
        if self.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = int(req.headers.get("Range", "bytes=0-").removeprefix("bytes=").split("-")[0] or 0)
        req.send_response(206 if start else 200)
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        req.send_header("Content-Length", str(len(data) - start))
        req.send_header("Accept-Ranges", "bytes")
        req.end_headers()
        if not body:
            return
        with self._lock:
            cut, self.cut_after = self.cut_after, None
        if cut is not None:
            # Send part of the body, then drop the connection, as a network cut would.
            req.wfile.write(data[start:start + cut])
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(2)
            return
        req.wfile.write(data[start:])
