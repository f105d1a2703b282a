"""Messages between the server and its model worker process: msgpack frames over pipes.

Each frame is a 4-byte big-endian length, then one msgspec-encoded message tagged by `op`.
"""

from __future__ import annotations

import struct
import threading
from typing import IO, Any, Union

import msgspec

from .backend import GenOptions, ModelInfo, Prompt

_HEADER = struct.Struct(">I")


class _Msg(msgspec.Struct, kw_only=True, frozen=True, tag_field="op"):
    id: int = 0


class Load(_Msg, tag="load"):
    """First message: build the backend `factory` ("module:Class") on `model_path`."""

    factory: str
    model_path: str
    kwargs: dict[str, Any] = {}


class Generate(_Msg, tag="generate"):
    """Stream one completion."""

    prompt: Prompt
    opts: GenOptions


class Cancel(_Msg, tag="cancel"):
    """Stop generation `id` after the current token."""


class Count(_Msg, tag="count"):
    """Count the tokens of `text`."""

    text: str


class Shutdown(_Msg, tag="shutdown"):
    """Close the model and exit."""


class Loaded(_Msg, tag="loaded"):
    """The model is ready."""

    info: ModelInfo


class Piece(_Msg, tag="piece"):
    """One generated text piece of request `id`."""

    text: str


class Done(_Msg, tag="done"):
    """Request `id` finished (or was cancelled)."""

    tokens_after_cancel: int = 0
    # Prompt-lookup draft tokens proposed and accepted in this request (GenOptions.lookup).
    drafted: int = 0
    accepted: int = 0


class Counted(_Msg, tag="counted"):
    """The token count for request `id`."""

    n: int


class Failed(_Msg, tag="failed"):
    """Request `id` (0: the load) raised `error` (a class name) with `message`."""

    error: str
    message: str
    path: str = ""
    reason: str = ""


ToWorker = Union[Load, Generate, Cancel, Count, Shutdown]
FromWorker = Union[Loaded, Piece, Done, Counted, Failed]


class Channel:
    """Framed message reads and writes on a pair of binary pipes; writes are thread-safe."""

    def __init__(self, reader: IO[bytes], writer: IO[bytes], incoming: Any) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = msgspec.msgpack.Decoder(incoming)
        self._encoder = msgspec.msgpack.Encoder()
        self._lock = threading.Lock()

    def send(self, message: _Msg) -> None:
        """Write one message; raises OSError (BrokenPipeError) when the other side is gone."""
        payload = self._encoder.encode(message)
        with self._lock:
            self._writer.write(_HEADER.pack(len(payload)) + payload)
            self._writer.flush()

    def receive(self) -> Any:
        """The next message, or None at end of stream (the other side closed or died)."""
        header = _read_exact(self._reader, _HEADER.size)
        if header is None:
            return None
        payload = _read_exact(self._reader, _HEADER.unpack(header)[0])
        return None if payload is None else self._decoder.decode(payload)


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
