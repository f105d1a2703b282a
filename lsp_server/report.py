"""Where errors reach the user: one place maps them to messages, logs and status notifications.

`notice_for` is the policy (issue 17 §3): a typed error becomes what the user sees, at which
level, and under which rate-limit key. `Reporter` carries it out: a rate-limited
`window/showMessage`, always a `window/logMessage`, and degraded features in `codeflow/status`.
"""

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

from codeflow.context.errors import ContextError, EditRejectedError
from codeflow.lsp_server.assistant.jobs import Cancelled
from codeflow.quant.errors import ModelNotFoundError, QuantError

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


class Notice(msgspec.Struct, kw_only=True, frozen=True):
    """What the user is told about one error."""

    message: str
    kind: types.MessageType
    # The rate-limit key: one popup per key per hour. None: the answer to something the user
    # just did (an action they picked), always shown. "": logged only, never a popup.
    key: str | None


def notice_for(exc: Exception, what: str = "", *, asked: bool = False, chat_told: bool = False) -> Notice | None:
    """The policy: how an error that ended a feature reaches the user; None for no notice.

    `what` names the feature ("Simplify: "); `asked`: the user picked this (an action), so its
    failure is always shown; `chat_told`: a missing chat model was told once already and sits in
    the status, so each hover or action that needs it only logs.
    """
    if isinstance(exc, Cancelled):
        return None
    message = f"{what}{exc}"
    if isinstance(exc, EditRejectedError):
        return Notice(message=f"{message}; nothing was changed", kind=types.MessageType.Warning,
                      key=None if asked else message)
    if isinstance(exc, (ContextError, msgspec.ValidationError, ValueError)) and asked:
        return Notice(message=message, kind=types.MessageType.Warning, key=None)
    if isinstance(exc, ModelNotFoundError) and chat_told:
        return Notice(message=message, kind=types.MessageType.Warning, key="")
    if isinstance(exc, QuantError):
        # Keyed by class and text: another failure of the same class is news, the same one is not.
        return Notice(message=message, kind=types.MessageType.Error, key=f"{type(exc).__name__}:{exc}")
    return Notice(message=message, kind=types.MessageType.Error, key=message)


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

    def show(self, message: str, kind: types.MessageType = types.MessageType.Error, key: str | None = None,
             limit: bool = True) -> None:
        """Tell the user once per key (default: the message) per hour, and log it every time;
        `limit=False` for the answer to something the user just asked for."""
        self.log(message, kind)
        key = key or message
        now = time.monotonic()
        if limit and now - self._shown.get(key, -NAG_INTERVAL_S) < NAG_INTERVAL_S:
            return
        self._shown[key] = now
        params = types.ShowMessageParams(type=kind, message=f"Codeflow: {message}")
        self.send(lambda: self._server.window_show_message(params))

    def error(self, exc: Exception, what: str = "", *, asked: bool = False) -> None:
        """Tell the user about a failed feature as `notice_for` decides."""
        notice = notice_for(exc, what, asked=asked, chat_told="chat model" in self.degraded)
        if notice is None:
            self.log(f"{what}cancelled")
        elif notice.key == "":
            self.log(notice.message, notice.kind)
        else:
            self.show(notice.message, notice.kind, key=notice.key, limit=notice.key is not None)

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
