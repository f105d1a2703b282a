"""The Codeflow language server: the server object and its document and completion handlers.

Handlers translate LSP into calls on the assistant facade (`assistant/facade.py`) and back
(STYLE.md; docs/architecture.md). Code actions and hovers are in `actions.py`; `app.py` puts
the two together.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote

import msgspec
from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument

from codeflow.context.errors import ContextError, UnreadableFileError
from codeflow.context.files import read_closed_file
from codeflow.context.walk import FileFilter
from codeflow.lsp_server import __version__, convert
from codeflow.lsp_server.assistant.completion import Completion, CompletionRequest
from codeflow.lsp_server.assistant.explain import CHAT_OFF, chat_model_problem
from codeflow.lsp_server.assistant.facade import Assistant
from codeflow.lsp_server.assistant.jobs import Cancelled
from codeflow.lsp_server.protocol import CodeflowProtocol, ProtocolError, serve_stdio
from codeflow.lsp_server.report import Reporter
from codeflow.lsp_server.settings import Settings, apply_layer, build
from codeflow.quant.backend import CancelToken
from codeflow.quant.errors import QuantError

log = logging.getLogger("codeflow")
T = TypeVar("T")
SHOW_CONTEXT = "codeflow.showContext"
STATS_METHOD = "codeflow/stats"


class CodeflowServer(LanguageServer):
    """pygls server with Codeflow's state on it; handlers receive it as `ls`."""

    def __init__(self) -> None:
        super().__init__("codeflow", __version__, protocol_cls=CodeflowProtocol)
        self.report = Reporter(self)
        self.assistant = Assistant(self._on_status, self.report.problem, self.report.error)
        # Progress tokens of running actions and explanations: the user may cancel them.
        self.progress_cancels: dict[str, CancelToken] = {}
        self._load_lock: asyncio.Lock | None = None

    def shutdown(self) -> None:
        """Also on a lost connection: stop generating and free the models, so the process ends."""
        try:
            self.assistant.close()
        finally:
            super().shutdown()

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """stdio that resynchronises after garbage and ends when the client is gone (issue 12)."""
        serve_stdio(self, stdin or sys.stdin.buffer, stdout or sys.stdout.buffer)

    def report_server_error(self, error: Exception, source: type[Exception]) -> None:
        """pygls's error hook: log each one, but pop up at most once an hour per kind (pygls
        shows every one: 576 popups in one fuzz run). A failed request already carries its error."""
        if source is FeatureRequestError:
            self.report.log(f"request failed: {error}", types.MessageType.Error)
            return
        origin = "a malformed message from the client" if source is ProtocolError else "an error in a handler"
        self.report.show(f"{error} ({origin})", types.MessageType.Warning,
                         key=f"{source.__name__}:{type(error).__name__}")

    def _on_status(self, status: msgspec.Struct) -> None:
        self.report.status(status)
        state = getattr(status, "state", "")
        if state in ("error", "fallback"):
            kind = types.MessageType.Error if state == "error" else types.MessageType.Warning
            self.report.show(getattr(status, "message", ""), kind, key=f"status:{status}")

    def apply_settings(self, raw: object, source: str, level_before: str | None = None) -> None:
        """One settings layer from the client; bad keys are named and keep their old value.

        The log level changes only when a layer changes `logLevel` (`level_before`: the level the
        comparison starts from): the default must not override `serve --log-level` (issue 12)."""
        level_before = level_before or self.assistant.settings.log_level
        settings, errors = apply_layer(self.assistant.settings, raw)
        for error in errors:
            self.report.show(f"{error} (from {source}); keeping the previous value", key=str(error))
        self.assistant.apply(settings)
        # Told once, and kept in `codeflow/status` for the editors' status and health checks.
        missing = chat_model_problem(settings)
        if missing is not None or self.report.degraded.get("chat model", "").startswith(CHAT_OFF):
            self.report.problem("chat model", missing)
        if settings.log_level != level_before:
            logging.getLogger("codeflow").setLevel(settings.log_level.upper())

    async def ensure_loaded(self, work_done: types.ProgressToken | None = None) -> None:
        """Load the completion model off the loop, with a "Loading model" progress: on the
        request's `workDoneToken` when it carries one, which LSP says the server uses instead of
        creating its own (a request that waits for a load begun elsewhere shows it there too)."""
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        if self.assistant.loaded():
            return
        token = work_done
        if token is not None:
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title="Loading model"))
        try:
            async with self._load_lock:
                if self.assistant.loaded():
                    return
                if token is None:
                    token = await self._progress_begin("Loading model")
                await self.in_model_thread(self.assistant.load)
        finally:
            self._progress_end(token)
        await self._advise_on_default_model()

    async def _advise_on_default_model(self) -> None:
        """With the embedded demo model in use, the status carries what this machine could run
        instead (issue 15); advice, so a failure to work it out is only logged."""
        s = self.assistant.settings
        if s.model.path or s.backend == "remote":
            return
        from codeflow.quant.recommend import default_model_advice

        try:
            self.report.recommendation = await asyncio.to_thread(default_model_advice, s.model.n_ctx)
        except Exception as exc:  # presets or hardware probing failed: no advice, the model still runs
            self.report.log(f"no model recommendation: {exc}", types.MessageType.Warning)
            return
        self.report.status()

    async def in_model_thread(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on the runtime's model threads, never the default executor (issue 12)."""
        return await asyncio.get_running_loop().run_in_executor(self.assistant.model_calls, call, *args)

    async def new_progress_token(self) -> str | None:
        """A `$/progress` token created on the client, or None when it has no progress support
        or refuses one (it still gets every result)."""
        caps = self.client_capabilities.window
        if caps is None or not caps.work_done_progress:
            return None
        token = f"codeflow-{uuid.uuid4().hex[:8]}"
        try:
            await self.work_done_progress.create_async(token)
        except Exception as exc:  # a client that refuses progress still gets the result
            self.report.log(f"progress not available: {exc}")
            return None
        return token

    async def _progress_begin(self, title: str) -> str | None:
        token = await self.new_progress_token()
        if token is not None:
            self.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=False))
        return token

    def _progress_end(self, token: str | None, message: str = "") -> None:
        if token is not None:
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message or None))

    def index_progress(self, token: str | None) -> Callable[[int, int], None]:
        """The engine's progress callback (called on its thread) as `$/progress` reports."""

        ended = threading.Event()

        def report(done: int, total: int) -> None:
            if token is None or ended.is_set():
                return
            if done >= total:
                ended.set()
                self.report.send(lambda: self._progress_end(token, f"{total} files indexed"))
                return
            value = types.WorkDoneProgressReport(message=f"{done}/{total} files", percentage=done * 100 // max(1, total))
            self.report.send(lambda: self.work_done_progress.report(token, value))

        return report

    def request_at(self, uri: str, source: str, position: types.Position, invoked: bool) -> CompletionRequest | None:
        """A completion request for a cursor, or None when this document is not completed."""
        doc = self.workspace.get_text_document(uri)
        settings = self.assistant.settings.completion
        language = convert.language_of(doc.path or uri, doc.language_id)
        if not settings.enabled or language in settings.disabled_languages:
            return None
        # Documents over the indexing limit are not completed either: a prompt window is cut from
        # them, but splitting and re-parsing megabytes on every keystroke costs more than it gives.
        limit = self.assistant.settings.context.max_file_bytes
        too_big = len(source) > limit or len(source.encode("utf-8", "surrogatepass")) > limit
        if too_big or "\x00" in source[:8192]:
            self.report.log(f"not completing {uri}: binary or larger than context.maxFileBytes ({limit} bytes)")
            return None
        local_only = self.is_private(doc.path or uri, "completion")
        if local_only is None:
            return None
        prefix, suffix = convert.split_at(source, position)
        return CompletionRequest(
            key=uri, path=self.assistant.display_path(doc.path or uri), language=language,
            prefix=prefix, suffix=suffix, invoked=invoked, local_only=local_only,
        )

    def is_private(self, path: str, feature: str, local_ok: bool = True) -> bool | None:
        """False for an ordinary file; for a private one (secret or ignored, by name or resolved
        target, or outside every root) True, local-only, or None, off, when only a remote
        backend is configured. The user is told which, once per file (issue 11, section 3)."""
        if not self.assistant.is_private(path):
            return False
        settings = self.assistant.settings
        if not settings.remote.url or settings.backend == "local":
            return True  # nothing could go remote: no need to tell
        off = settings.backend == "remote" or not local_ok
        mode = "off: only a remote backend is configured" if settings.backend == "remote" else \
            "local-only" if local_ok else "off"
        self.report.show(f"{feature} in {Path(path).name} is {mode} (a private file: secret, ignored or"
                         " outside the workspace; it is never sent to a remote endpoint)",
                         types.MessageType.Info, key=f"private:{feature}:{path}")
        return None if off else True

    def open_document(self, uri: str) -> TextDocument | None:
        """The document the editor has open under `uri`, or None."""
        return self.workspace.text_documents.get(unquote(uri))

    def read_open(self, uri: str) -> tuple[str, int | None]:
        """An open document's text and version; a ContextError when the editor has not opened it."""
        doc = self.open_document(uri)
        if doc is None:
            raise UnreadableFileError(f"{uri} is not open in the editor")
        return doc.source, doc.version

    async def read(self, uri: str) -> tuple[str, int | None]:
        """An open document's text and version, or a closed workspace file's text (version None),
        read off the event loop; anything else raises a ContextError that says why."""
        doc = self.open_document(uri)
        if doc is not None:
            return doc.source, doc.version
        return await asyncio.to_thread(self._read_closed, uri), None

    def _read_closed(self, uri: str) -> str:
        path = to_fs_path(uri) if uri.startswith("file:") else None
        if path is None:
            raise UnreadableFileError(f"cannot read {uri}: not an open document or a file URI")
        c = self.assistant.settings.context
        filters = [FileFilter(r.resolve(), c.exclude, c.secret_globs, c.max_file_bytes) for r in self.assistant.roots]
        return read_closed_file(Path(path), filters, c.max_file_bytes)

    async def show_context(self, args: list) -> dict:
        """`codeflow.showContext`: args[0] is {uri, position}; bad arguments get a clear error."""
        try:
            target = msgspec.convert(args[0] if args else None, convert.CursorArg)
            position = types.Position(line=target.position.line, character=target.position.character)
            prefix, suffix = convert.split_at((await self.read(target.uri))[0], position)
        except ValueError as exc:  # msgspec's ValidationError and lsprotocol's range checks
            raise JsonRpcInvalidParams(f"{SHOW_CONTEXT} expects [{{uri, position: {{line, character}}}}]: {exc}") from exc
        except ContextError as exc:  # an unreadable file or a position outside it: a bad argument
            raise JsonRpcInvalidParams(f"{SHOW_CONTEXT}: {exc}") from exc
        line, col = prefix.count("\n"), len(prefix) - prefix.rfind("\n") - 1
        return await asyncio.to_thread(self.assistant.context_view, fs_path(target.uri), prefix + suffix, line, col)

    async def complete(self, uri: str, position: types.Position, invoked: bool,
                       work_done: types.ProgressToken | None = None) -> Completion | None:
        """Run the pipeline off the loop; a cancelled request stops its generation, and a newer
        request for the same document supersedes it (answered empty at once). `work_done`: the
        request's `workDoneToken`, for the progress of a model load it waits for."""
        cancel = self.assistant.begin_completion(uri)
        try:
            req = self.request_at(uri, (await self.read(uri))[0], position, invoked)
        except ContextError as exc:
            self.report.log(f"completion request rejected: {exc}", types.MessageType.Warning)
            return None
        if req is None:
            return None
        await self.ensure_loaded(work_done)
        if cancel.cancelled:
            return None
        try:
            return await self.in_model_thread(self.assistant.complete, req, cancel)
        except asyncio.CancelledError:
            cancel.cancel()
            raise
        except (Cancelled, QuantError) as exc:
            self.report.error(exc)
            return None


def fs_path(uri: str) -> Path:
    """A document URI as a filesystem path (non-file URIs keep their text)."""
    return Path(to_fs_path(uri) or uri)


server = CodeflowServer()


@server.feature(types.INITIALIZE)
def initialize(ls: CodeflowServer, params: types.InitializeParams) -> None:
    """Build settings from codeflow.toml and initializationOptions; remember the roots."""
    folders = params.workspace_folders or []
    uris = [f.uri for f in folders] or ([params.root_uri] if params.root_uri else [])
    roots = [Path(to_fs_path(u) or u) for u in uris]
    settings, errors = build(roots[0] if roots else None)
    ls.assistant.set_workspace(roots, settings)
    for error in errors:
        ls.report.show(str(error), key=str(error))
    # Compared with the default, so that a level from codeflow.toml applies as well.
    ls.apply_settings(params.initialization_options, "initializationOptions", Settings().log_level)


@server.feature(types.INITIALIZED)
async def initialized(ls: CodeflowServer, params: types.InitializedParams) -> None:
    """Start indexing and loading in the background; neither blocks requests."""
    ls.report.bind_loop()
    token = await ls._progress_begin("Indexing workspace") if ls.assistant.roots else None
    if not ls.assistant.start_indexing(ls.index_progress(token)) and token is not None:
        ls._progress_end(token)
    asyncio.ensure_future(ls.ensure_loaded())


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: CodeflowServer, params: types.DidOpenTextDocumentParams) -> None:
    """Unsaved buffers override the disk in the context engine."""
    ls.assistant.set_buffer(fs_path(params.text_document.uri), params.text_document.text)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CodeflowServer, params: types.DidChangeTextDocumentParams) -> None:
    """pygls applied the incremental change already; pass the new text and the edit on."""
    doc = ls.workspace.get_text_document(params.text_document.uri)
    path = fs_path(doc.uri)
    ls.assistant.set_buffer(path, doc.source)
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            ls.assistant.record_edit(path, change.range.start.line, change.text)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CodeflowServer, params: types.DidCloseTextDocumentParams) -> None:
    """Forget the buffer and its completion cache."""
    ls.assistant.drop_buffer(fs_path(params.text_document.uri), params.text_document.uri)


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: CodeflowServer, params: types.DidChangeConfigurationParams) -> None:
    """A new settings layer on top of the current one."""
    ls.apply_settings(params.settings, "workspace/didChangeConfiguration")


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(
    ls: CodeflowServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList | None:
    """Ghost text at the cursor."""
    invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
    result = await ls.complete(params.text_document.uri, params.position, invoked, params.work_done_token)
    if result is None:
        return types.InlineCompletionList(items=[])
    return convert.inline_items(result, params.position)


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
async def completion(ls: CodeflowServer, params: types.CompletionParams) -> types.CompletionList:
    """The same completion as an item, for clients without inline completion, or when asked."""
    invoked = params.context is None or params.context.trigger_kind == types.CompletionTriggerKind.Invoked
    caps = ls.client_capabilities.text_document
    if not invoked and caps is not None and caps.inline_completion is not None:
        # The ghost text already answers this keystroke; a second generation here would halve
        # its CPU and show nothing new (issue 13, bug 5). Ctrl+Space still asks for one.
        return types.CompletionList(is_incomplete=False, items=[])
    result = await ls.complete(params.text_document.uri, params.position, invoked, params.work_done_token)
    if result is None:
        return types.CompletionList(is_incomplete=True, items=[])
    answer = convert.completion_items(result, params.position)
    if params.partial_result_token is not None and answer.items:
        # Partial results carry the items; the final response is then empty (LSP 3.17).
        ls.progress(types.ProgressParams(token=params.partial_result_token, value=answer))
        return types.CompletionList(is_incomplete=True, items=[])
    return answer


@server.command(SHOW_CONTEXT)
async def show_context(ls: CodeflowServer, *args: object) -> dict:
    """The packed context for a cursor, as `codeflow context --json` prints it."""
    # pygls passes each command argument positionally; `args: list` would make it structure the
    # first argument (the {uri, position} object) as a list of its keys.
    return await ls.show_context(list(args))


@server.feature(STATS_METHOD)
def stats(ls: CodeflowServer, params: object) -> dict:
    """Diagnostics of the last completion job (timings, tokens, cancellation), and cumulative
    counters since the start (`totals`: requests, generations, in-flight maximum)."""
    answer = ls.assistant.completion_stats()
    answer["totals"]["pending_handlers"] = ls.protocol.pending()
    return answer


@server.feature(types.SHUTDOWN)
async def shutdown(ls: CodeflowServer, params: None) -> None:
    """Stop generating and release the models before exit."""
    await asyncio.to_thread(ls.assistant.close)

