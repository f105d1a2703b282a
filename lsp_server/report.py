"""Where errors reach the user: one place maps them to messages, logs and status notifications."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec
from lsprotocol import types

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger("codeflow")
STATUS_METHOD = "codeflow/status"
# Like llm-ls: the same message pops up at most once an hour; the log always has it.
NAG_INTERVAL_S = 3600.0
LEVELS = {
    types.MessageType.Error: logging.ERROR,
    types.MessageType.Warning: logging.WARNING,
    types.MessageType.Info: logging.INFO,
    types.MessageType.Log: logging.DEBUG,
}


class Reporter:
    """Rate-limited `window/showMessage`, always `window/logMessage`, and `codeflow/status`."""

    def __init__(self, server: LanguageServer) -> None:
        self._server = server
        self._shown: dict[str, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Features that are off or degraded, and why: sent with every `codeflow/status`.
        self.degraded: dict[str, str] = {}
        # What to run instead of the embedded demo model, when it is in use (issue 15).
        self.recommendation = ""
        self._status: dict | None = None

    def bind_loop(self) -> None:
        """Remember the event loop: writes from worker threads are handed to it."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def send(self, write: Callable[[], None]) -> None:
        """Run a write on the event loop (directly when already on it)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            write()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(write)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Error, key: str | None = None) -> None:
        """Tell the user once (per key, per hour) and log it every time."""
        self.log(message, kind)
        key = key or message
        now = time.monotonic()
        if now - self._shown.get(key, -NAG_INTERVAL_S) < NAG_INTERVAL_S:
            return
        self._shown[key] = now
        params = types.ShowMessageParams(type=kind, message=f"Codeflow: {message}")
        self.send(lambda: self._server.window_show_message(params))

    def log(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        """Send to the client's log and to the server's own log."""
        log.log(LEVELS.get(kind, logging.INFO), message)
        params = types.LogMessageParams(type=kind, message=message)
        self.send(lambda: self._server.window_log_message(params))

    def status(self, status: msgspec.Struct | None = None) -> None:
        """Send the `codeflow/status` notification the editor clients show (the last one again
        when `status` is None), with the features that are degraded."""
        if status is not None:
            self._status = msgspec.to_builtins(status)
        if self._status is None:
            return
        payload = {**self._status, "degraded": dict(self.degraded)}
        if self.recommendation:
            payload["recommendation"] = self.recommendation
        self.send(lambda: self._server.protocol.notify(STATUS_METHOD, payload))

    def problem(self, feature: str, message: str | None) -> None:
        """A feature stopped working or works less (told once, kept in the status), or, with
        message None, works again."""
        if message is None:
            if self.degraded.pop(feature, None) is not None:
                self.log(f"{feature} works again", types.MessageType.Info)
                self.status()
            return
        told = feature in self.degraded
        self.degraded[feature] = message
        if told:
            # One message per feature that stops working: a missing chat model then failing each
            # hover, explanation and action is one problem, not a stack of errors (issue 13).
            self.log(message, types.MessageType.Warning)
        else:
            self.show(message, types.MessageType.Warning, key=f"problem:{feature}:{message}")
        self.status()
