"""LSP base-protocol framing that survives garbage on the wire (issue 12).

pygls 2 reads `Content-Length: N\\r\\n` only in that exact spelling and at the start of a line, and
`read(N)`s whatever N says: a lowercase header, LF-only lines or a wrong length leave it deaf for
good, and `Content-Length: 99999999999` ends in a MemoryError. This framer takes header names in
any case and LF-only line ends, caps the size, and after anything it cannot frame skips to the next
`Content-Length` header. That is safe because valid JSON can never hold such a header: letters
outside strings spell only true/false/null, and strings cannot hold a raw line end.
https://microsoft.github.io/language-server-protocol/specifications/base/0.9/specification/
"""

from __future__ import annotations

import json
import re

import msgspec

# No LSP message comes near this (a 7 MB didOpen is the largest seen); past it, skip and say so.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Bytes without any header are dropped past this, keeping a tail where a header may begin.
MAX_GARBAGE_BYTES = 64 * 1024
KEEP_TAIL = 256
HEADER = re.compile(rb"content-length[ \t]*:[ \t]*(\S*)[ \t]*\r?\n", re.IGNORECASE)
OTHER_HEADER = re.compile(rb"[!-9;-~]+[ \t]*:[^\r\n]*\r?\n")
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class Frame(msgspec.Struct, frozen=True):
    """A parsed message (`error` empty), or why bytes were skipped and which code answers it."""

    message: object = None
    error: str = ""
    code: int = 0
    # Up to MAX_GARBAGE_BYTES of what was skipped: a request in it still gets its id answered.
    skipped: bytes = b""


class Framer:
    """Bytes in, frames out (no I/O): feed what arrived, in pieces of any size."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._length: int | None = None
        self._scanned = 0
        # After a failure already reported, the bytes up to the next header are not reported again.
        self._resyncing = False

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; returns the frames they complete."""
        self._buf += data
        out: list[Frame] = []
        while self._body(out) if self._length is not None else self._header(out):
            pass
        return out

    def _header(self, out: list[Frame]) -> bool:
        match = HEADER.search(self._buf)
        if match is None:
            if len(self._buf) > MAX_GARBAGE_BYTES:
                self._drop(len(self._buf) - KEEP_TAIL, out)
            return False
        if match.start() > 0:
            self._drop(match.start(), out)
            return True
        self._resyncing = False
        end = self._headers_end(match.end())
        if end is None:
            return False
        value = match.group(1)
        if end < 0:
            # Not ended by a blank line (a body right after the header): frame from what follows.
            del self._buf[:match.end()]
        elif not value.isdigit():
            del self._buf[:end]
            out.append(Frame(error=f"Content-Length {value.decode('latin-1')!r} is not a byte count",
                             code=PARSE_ERROR))
        elif int(value) > self.max_bytes:
            del self._buf[:end]
            out.append(Frame(error=f"a message of {int(value)} bytes is over the {self.max_bytes}-byte limit",
                             code=INVALID_REQUEST))
        else:
            del self._buf[:end]
            self._length, self._scanned = int(value), 0
        return True

    def _headers_end(self, pos: int) -> int | None:
        """Where the body starts (after the blank line); -1 for a non-header line; None: wait."""
        while (nl := self._buf.find(b"\n", pos)) >= 0:
            line = bytes(self._buf[pos:nl + 1])
            if not line.strip():
                return nl + 1
            if not OTHER_HEADER.fullmatch(line) or HEADER.search(line):
                return -1  # garbage, or a header glued to it: frame from that header instead
            pos = nl + 1
        return -1 if len(self._buf) - pos > MAX_GARBAGE_BYTES else None

    def _body(self, out: list[Frame]) -> bool:
        length = self._length or 0
        # Rescan a little before where the last look ended: a header may straddle two reads.
        match = HEADER.search(self._buf, max(0, self._scanned - KEEP_TAIL))
        self._scanned = len(self._buf)
        if match is not None and match.start() < length:
            out.append(Frame(error=f"Content-Length {length} runs past the next header, {match.start()} bytes"
                                   " in", code=PARSE_ERROR, skipped=bytes(self._buf[:match.start()])))
            del self._buf[:match.start()]
            self._length = None
            return True
        if len(self._buf) < length:
            return False
        self._length = None
        try:
            message = json.loads(bytes(self._buf[:length]))
        except (ValueError, RecursionError) as exc:
            # The length may be short: keep the bytes and look for the next header inside them.
            out.append(Frame(error=f"invalid JSON in a {length}-byte body: {exc}", code=PARSE_ERROR))
            self._resyncing = True
            return True
        del self._buf[:length]
        out.append(Frame(message=message))
        return True

    def _drop(self, count: int, out: list[Frame]) -> None:
        skipped = bytes(self._buf[:count])
        del self._buf[:count]
        if not self._resyncing and not _only_headers(skipped):
            out.append(Frame(error=f"{count} bytes without a Content-Length header skipped", code=PARSE_ERROR,
                             skipped=skipped[:MAX_GARBAGE_BYTES]))
        self._resyncing = True


def _only_headers(data: bytes) -> bool:
    """Whether skipped bytes hold nothing but blank lines and other headers (Content-Type)."""
    return all(not line.strip() or OTHER_HEADER.fullmatch(line) for line in data.splitlines(keepends=True))
