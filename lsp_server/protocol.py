"""Every request gets an answer, and stdio that survives a bad client (issue 12).

pygls 2.1 drops a request whose params fail to deserialize: `structure_message` raises inside the
JSON decoder's object hook, the reader loop logs it and shows a popup, and no response is sent,
so the client waits forever. `CodeflowProtocol` structures each message itself and answers such a
request with -32602 naming the field; malformed envelopes get -32600 and unparsable input -32700
(JSON-RPC 2.0, section 5.1). `serve_stdio` replaces pygls's stdio loop with `framing.Framer` and
treats a client that closed our stdout like end of input. See docs/robustness.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import select
import threading
from collections.abc import Callable
from typing import IO, Any

import contextvars
from collections.abc import Generator

import attrs
import cattrs
from lsprotocol import types
from lsprotocol.types import EXIT, ResponseErrorMessage
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInternalError,
    JsonRpcInvalidParams,
    JsonRpcInvalidRequest,
    JsonRpcParseError,
)
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage

from codeflow.lsp_server.framing import INVALID_REQUEST, Frame, Framer

log = logging.getLogger("codeflow")
# The `workDoneToken` of the `workspace/executeCommand` being handled: pygls passes a command only
# its arguments.
WORK_DONE_TOKEN: contextvars.ContextVar[int | str | None] = contextvars.ContextVar("work_done_token", default=None)
CHUNK_BYTES = 64 * 1024
# Chunks read ahead of the loop: a flooding client waits in its write instead of filling memory.
READ_AHEAD = 16
MsgId = int | str | None


class ProtocolError(JsonRpcException):
    """A malformed message from the client: the `source` (and, for notifications, the error)
    that `report_server_error` gets, so that such reports pop up at most once an hour."""


def _valid_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _camel(text: str) -> str:
    """`$.params.text_document` as the client spelled it: `$.params.textDocument`."""
    head, sep, path = text.rpartition(" @ ")
    return head + sep + re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path) if sep else text


def _format(exc: BaseException, kind: type | None) -> str:
    # lsprotocol's range validators say which field and value ("Position.line should be ...").
    if isinstance(exc, ValueError) and " should be " in str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def describe(exc: BaseException) -> str:
    """A cattrs structuring failure as `problem @ $.path` lines, fields named as on the wire."""
    if isinstance(exc, cattrs.BaseValidationError):
        lines = cattrs.transform_error(exc, path="$", format_exception=_format)
    else:
        lines = [f"{type(exc).__name__}: {exc}"]
    return "; ".join(_camel(line) for line in lines[:4]) + (f" (+{len(lines) - 4} more)" if len(lines) > 4 else "")


def _strict_scalar(value: object, target: type) -> object:
    """cattrs calls int("3"), str({}) and int(0.5): for int, str and bool a wrong JSON type is a
    client bug to name. Subclasses routed here (enums) are built as cattrs builds them."""
    if target in (int, str, bool):
        if type(value) is not target:
            raise TypeError(f"expected {target.__name__}, got {type(value).__name__}")
        return value
    return target(value)


class CodeflowProtocol(LanguageServerProtocol):
    """pygls's protocol, fed by `receive`: checks the envelope and params before dispatching."""

    def __init__(self, server: LanguageServer, converter: cattrs.Converter) -> None:
        super().__init__(server, converter)
        # A class hook: it also receives bool and the int- and str-based enums (see above).
        for kind in (int, str):
            converter.register_structure_hook(kind, _strict_scalar)
        # The request being dispatched, and the tasks of running commands by request id.
        self._dispatching: MsgId | None = None
        self._command_tasks: dict[MsgId, asyncio.Task] = {}

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams) -> Generator[Any, Any, Any]:
        """pygls's command dispatch; an async command sees the client's `workDoneToken` in
        `WORK_DONE_TOKEN`, set inside the command's own task only (issue 13, bug 9), and a
        `$/cancelRequest` for the command's request cancels that task (see `_handle_cancel_notification`)."""
        inner = super().lsp_workspace__execute_command(params)
        handler, args, kwargs = next(inner)
        if asyncio.iscoroutinefunction(handler):
            command, token, msg_id = handler, params.work_done_token, self._dispatching

            async def tracked(*a: Any, **k: Any) -> Any:
                WORK_DONE_TOKEN.set(token)
                task = asyncio.current_task()
                if task is not None and msg_id is not None:
                    self._command_tasks[msg_id] = task
                try:
                    return await command(*a, **k)
                finally:
                    self._command_tasks.pop(msg_id, None)

            handler = tracked
        try:
            inner.send((yield handler, args, kwargs))
        except StopIteration as stop:
            return stop.value
        raise RuntimeError("pygls's executeCommand handler yielded twice")

    def _execute_handler(self, msg_id: Any, handler: Any, callback: Any, args: Any = None,
                         kwargs: Any = None) -> None:
        """pygls's dispatch, without its leak: it files a notification's future under a fresh id
        in `_request_futures` and never removes it (2 KB per keystroke: +11 MB over the 6,000-
        keystroke soak). Requests are removed when answered; notifications now when done."""
        self._dispatching = msg_id
        try:
            super()._execute_handler(msg_id, handler, callback, args, kwargs)
        finally:
            self._dispatching = None
        future = self._request_futures.get(msg_id)
        if future is not None and callback == self._check_handler_result:
            future.add_done_callback(lambda _: self._request_futures.pop(msg_id, None))

    def _handle_cancel_notification(self, msg_id: MsgId) -> None:
        """pygls cancels only a command's request future, not the task running the command
        (`_run_generator` in pygls's protocol/json_rpc.py), so a cancelled action ran on."""
        task = self._command_tasks.pop(msg_id, None)
        if task is not None:
            task.cancel()
        super()._handle_cancel_notification(msg_id)

    def pending(self) -> int:
        """Requests and notifications whose handlers have not ended (for `codeflow/stats`)."""
        return len(self._request_futures)

    def receive(self, frame: Frame) -> None:
        """One frame from the reader: a message, or bytes that could not be framed."""
        if frame.error:
            self._unframed(frame)
        elif not isinstance(frame.message, dict):
            what = "an array (LSP has no batches)" if isinstance(frame.message, list) else type(frame.message).__name__
            self._refuse(None, JsonRpcInvalidRequest(f"expected one JSON-RPC message object, got {what}"))
        else:
            self.receive_object(frame.message)

    def _unframed(self, frame: Frame) -> None:
        # A request inside skipped bytes still gets its id answered, so its sender does not wait.
        data = _salvage(frame.skipped)
        if isinstance(data, dict) and _valid_id(data.get("id")) and isinstance(data.get("method"), str):
            self._refuse(data["id"], JsonRpcInvalidRequest(f"{data['method']}: {frame.error}"))
        elif frame.code == INVALID_REQUEST:
            self._refuse(None, JsonRpcInvalidRequest(frame.error))
        else:
            self._refuse(None, JsonRpcParseError(frame.error))

    def receive_object(self, data: dict[str, Any]) -> None:
        """A decoded JSON object: answer it with an error, or hand it to pygls."""
        msg_id, method = data.get("id"), data.get("method")
        is_request = "id" in data and method is not None
        problem = self._envelope_problem(data)
        if problem:
            self._refuse(msg_id if _valid_id(msg_id) else None, JsonRpcInvalidRequest(problem))
            return
        if self._shutdown and is_request and method != EXIT:
            # LSP: requests after `shutdown` fail with InvalidRequest (pygls drops them).
            self._refuse(msg_id, JsonRpcInvalidRequest(f"{method}: the server is shutting down"))
            return
        try:
            message = self._structure(data)
        except JsonRpcInvalidParams as exc:
            if is_request:
                self._refuse(msg_id, exc)
            else:
                self._server._report_server_error(ProtocolError(str(exc)), ProtocolError)
            return
        try:
            self.handle_message(message)
        except Exception as exc:
            log.exception("failed to handle %s", method or "a response")
            if is_request:
                self._refuse(msg_id, JsonRpcInternalError(f"{method}: {type(exc).__name__}: {exc}"))

    def _envelope_problem(self, data: dict[str, Any]) -> str:
        """What makes the object no JSON-RPC 2.0 message ("" when nothing)."""
        method, msg_id = data.get("method"), data.get("id")
        if data.get("jsonrpc") != "2.0":
            return f'"jsonrpc" must be "2.0", got {data.get("jsonrpc")!r}'
        if "method" in data and not isinstance(method, str):
            return f'"method" must be a string, got {type(method).__name__}'
        if "id" in data and not _valid_id(msg_id) and (method is not None or "error" not in data):
            return f'"id" must be a string or an integer, got {json.dumps(msg_id)[:40]}'
        if method is None and not ("id" in data and ("result" in data or "error" in data)):
            return 'a message needs "method", or "id" with "result" or "error"'
        kind = self.get_message_type(method) if method is not None else None
        if "id" in data and kind is not None and "id" not in attrs.fields_dict(kind):
            return f"{method} is a notification, but it was sent with an id"
        return ""

    def _structure(self, data: dict[str, Any]) -> Any:
        """The typed message, as pygls's `structure_message` builds it; raises InvalidParams."""
        method = data.get("method")
        if method is not None:
            default = JsonRPCRequestMessage if "id" in data else JsonRPCNotification
            kind = self.get_message_type(method) or default
        elif "error" in data:
            kind = ResponseErrorMessage
        else:
            kind = self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
        try:
            return self._converter.structure(data, kind)
        except Exception as exc:
            raise JsonRpcInvalidParams(f"invalid params for {method or 'a response'}: {describe(exc)}") from exc

    def _refuse(self, msg_id: MsgId, error: JsonRpcException) -> None:
        """Answer with an error (id null when unknown), log it, pop up at most once per kind."""
        if msg_id is None:
            # lsprotocol's converter drops a None id, but JSON-RPC wants `"id": null` here.
            self._send_data({"jsonrpc": "2.0", "id": None, "error": {"code": error.code, "message": error.message}})
        else:
            self._send_response(msg_id, error=error.to_response_error())
        self._server._report_server_error(error, ProtocolError)


def _salvage(skipped: bytes) -> object:
    """A JSON value at the end of skipped bytes (after any header lines), or None."""
    text = skipped.decode("utf-8", "replace").strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except (ValueError, RecursionError):
        return None


class StdioLink:
    """stdin read on a daemon thread and stdout writes; a client that closed stdout ends serving."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._stdin, self._stdout = stdin, stdout
        self._room = threading.Semaphore(READ_AHEAD)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chunks: asyncio.Queue[bytes] | None = None
        self.lost = threading.Event()

    async def serve(self, receive: Callable[[Frame], None]) -> None:
        """Frame what arrives until end of input or a lost client."""
        self._loop, self._chunks = asyncio.get_running_loop(), asyncio.Queue()
        # Daemon threads: a read blocked on an open stdin must not keep the process alive.
        threading.Thread(target=self._read, name="codeflow-stdin", daemon=True).start()
        threading.Thread(target=self._watch_stdout, name="codeflow-stdout", daemon=True).start()
        framer = Framer()
        while chunk := await self._chunks.get():
            self._room.release()
            for frame in framer.feed(chunk):
                receive(frame)

    def _read(self) -> None:
        # os.read, not the buffered object: its lock would abort interpreter shutdown.
        try:
            fd = self._stdin.fileno()
            read: Callable[[], bytes] = lambda: os.read(fd, CHUNK_BYTES)  # noqa: E731
        except (AttributeError, OSError, ValueError):
            read = lambda: self._stdin.read1(CHUNK_BYTES)  # type: ignore[attr-defined]  # noqa: E731
        chunk = b"x"
        while chunk:
            self._room.acquire()
            try:
                chunk = read()
            except (OSError, ValueError):
                chunk = b""
            self._push(chunk)

    def _push(self, chunk: bytes) -> None:
        if self._loop is not None and self._chunks is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._chunks.put_nowait, chunk)
            except RuntimeError:  # the loop closed in between: nothing left to tell
                pass

    def _watch_stdout(self) -> None:
        # Event mask 0: poll wakes only on POLLERR/POLLHUP, i.e. when the client closed its end.
        try:
            poller = select.poll()
            poller.register(self._stdout.fileno(), 0)
        except (AttributeError, OSError, ValueError):
            return
        if poller.poll():
            self.client_lost("the client closed the server's stdout")

    def client_lost(self, why: str) -> None:
        """No one reads our output any more: stop as on end of input (any thread)."""
        if not self.lost.is_set():
            self.lost.set()
            log.warning("%s; shutting down", why)
            self._push(b"")

    def write(self, data: bytes) -> None:
        """pygls's writer interface; a failed write means the client is gone."""
        if self.lost.is_set():
            return
        try:
            self._stdout.write(data)
            self._stdout.flush()
        except (OSError, ValueError) as exc:
            self.client_lost(f"writing to the client failed ({exc})")

    def close(self) -> None:
        """Close stdout (pygls does on `exit`)."""
        try:
            self._stdout.close()
        except OSError:
            pass


def serve_stdio(server: LanguageServer, stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Serve one client over stdio until end of input, a lost client or `exit`."""
    protocol = server.protocol
    if not isinstance(protocol, CodeflowProtocol):
        raise TypeError(f"serve_stdio needs a CodeflowProtocol, got {type(protocol).__name__}")
    link = StdioLink(stdin, stdout)
    protocol.set_writer(link)
    try:
        asyncio.run(link.serve(protocol.receive))
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()
