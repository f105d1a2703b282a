"""What a running Codeflow owns: settings, the model backends, the context engine and the
completion service. The server and `codeflow complete` share it; it never imports pygls.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from codeflow.context.api import ContextEngineAPI
from codeflow.lsp_server.assistant.completion import CompletionRequest, CompletionService
from codeflow.lsp_server.assistant.layout import WINDOW_STEP
from codeflow.lsp_server.settings import Settings
from codeflow.quant.backend import Backend
from codeflow.quant.fallback import FallbackBackend, Status
from codeflow.quant.models import resolve_chat_model, resolve_model

log = logging.getLogger(__name__)
# Threads that wait on models (completions, model loads); more requests queue for them.
MODEL_THREADS = 8
# Documents whose cursor-specific context is kept (EngineContext).
CURSOR_BLOCKS = 32


class EngineContext:
    """Adapts the context engine to the completion pipeline's ContextSource.

    With `stable` (issue 16 §1) the context opens with the file's block (what its imports define,
    the same at every position), then the cursor's snippets, which stay as they were while the
    prefix window keeps its start (without one: while the cursor stays in the same function) and
    nothing they depend on changed: a prompt whose start
    stays put keeps llama.cpp's KV cache across keystrokes and jumps. Without it, every request
    re-ranks one block for the cursor (the layout before issue 16, kept for `codeflow bench latency`).
    """

    def __init__(self, engine: Callable[[], ContextEngineAPI | None], root: Path, stable: bool = True) -> None:
        self.engine = engine
        self.root = root
        self.stable = stable
        # Per document: (what the cursor block depends on, the rendered cursor block).
        self._cursor: OrderedDict[str, tuple[tuple, str]] = OrderedDict()
        self._lock = threading.Lock()

    def context_text(
        self, req: CompletionRequest, budget: int, count_tokens: Callable[[str], int], file_sep: str | None,
        file_budget: int = 0, window_start: int | None = None,
    ) -> str:
        """Packed, rendered snippets for the cursor at the end of `req.prefix`."""
        path = _abs_path(self.root, req.path)
        line = req.prefix.count("\n")
        col = len(req.prefix) - req.prefix.rfind("\n") - 1
        engine = self.engine()
        text = req.prefix + req.suffix
        if not self.stable or file_budget <= 0:
            packed = engine.query(path, text, line, col, budget, count_tokens, file_sep)
            return engine.render(packed, path, file_sep)
        head = engine.file_context(path, text, min(file_budget, budget), count_tokens, file_sep)
        head_text = engine.render(head, path, file_sep)
        anchor = ("window", window_start) if window_start is not None else _function_anchor(engine, path, text, line)
        deps = (req.path, anchor, head_text, engine.disk_version, budget - head.used, file_sep)
        with self._lock:
            held = self._cursor.get(req.key)
        if held is not None and held[0] == deps:
            return head_text + held[1]
        skip = frozenset((s.path, s.start_line, s.end_line) for s in head.snippets)
        packed = engine.query(path, text, line, col, budget - head.used, count_tokens, file_sep, skip=skip)
        tail = engine.render(packed, path, file_sep)
        with self._lock:
            self._cursor[req.key] = (deps, tail)
            self._cursor.move_to_end(req.key)
            while len(self._cursor) > CURSOR_BLOCKS:
                self._cursor.popitem(last=False)
        return head_text + tail


def _function_anchor(engine: ContextEngineAPI, path: Path, text: str, line: int) -> tuple:
    """The definition around a line; outside any, the block of WINDOW_STEP lines around it."""
    found = engine.function_at(path, text, line)
    return (found.kind, found.name, found.start_line) if found is not None else ("", "", line // WINDOW_STEP)


def _log_problem(feature: str, message: str | None) -> None:
    if message is not None:
        log.warning("%s: %s", feature, message)


def _abs_path(root: Path, path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


class Runtime:
    """Owns the backends and services for one workspace."""

    def __init__(
        self,
        settings: Settings,
        workspace: Path | None,
        on_status: Callable[[Status], None] = lambda status: None,
    ) -> None:
        self.settings = settings
        self.workspace = workspace
        self._on_status = on_status
        # (feature, message): a feature that stopped working or works less, told to the user
        # (issue 11 §6); message None when it works again. The server routes it to its Reporter.
        self.on_problem: Callable[[str, str | None], None] = _log_problem
        self._lock = threading.Lock()
        self._backend: FallbackBackend | None = None
        self._chat: FallbackBackend | None = None
        self.engine: ContextEngineAPI | None = None
        self._closed = False
        self._buffer_failed = False
        self._too_large: set[str] = set()  # open buffers past maxFileBytes, told once each
        self._buffers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeflow-buffers")
        # Model calls wait on their own threads: blocked ones (a hung endpoint) never take the
        # default executor's threads that file reads and showContext use (issue 12).
        self.model_calls = ThreadPoolExecutor(max_workers=MODEL_THREADS, thread_name_prefix="codeflow-model")
        self.completion = CompletionService(self.backend, settings)

    def backend(self) -> Backend:
        """The completion backend, built on first use (loading happens on its first call)."""
        with self._lock:
            if self._backend is None:
                self._backend = self._make_backend(chat=False)
            return self._backend

    def chat_backend(self) -> Backend:
        """The instruct backend for code actions and hovers."""
        with self._lock:
            if self._chat is None:
                self._chat = self._make_backend(chat=True)
            return self._chat

    def load(self) -> Status | None:
        """Load the completion model now (blocking; call it off the event loop)."""
        backend = self.backend()
        assert isinstance(backend, FallbackBackend)
        backend.start()
        status = backend.status
        # Only a local model's speed is measured: nothing is sent to an endpoint for it.
        if status is not None and status.state == "ready" and status.backend == "local":
            try:
                self.completion.calibrate()
            except Exception as exc:  # the budget then starts from its default speed
                log.warning("measuring the prompt speed failed: %s", exc)
        return backend.status

    def _make_backend(self, chat: bool) -> FallbackBackend:
        s = self.settings
        remote = self._remote_factory(chat) if s.remote.url and s.backend != "local" else None
        # `codeflow/status` describes the completion model and changes that last: not a
        # generating/ready pair per keystroke (issue 13, bug 6), and not the chat model's load,
        # which made the status bar name the chat model (bug 7); chat problems are degradations.
        on_status = self._on_chat_status if chat else self._on_status
        if s.backend == "remote":
            # Remote is the plan, not a fallback: its status and errors name it as such.
            return FallbackBackend(remote, None, on_status, primary_kind="remote", report_generating=False)
        return FallbackBackend(self._local_factory(chat), remote, on_status, primary_kind="local",
                               report_generating=False)

    def _on_chat_status(self, status: Status) -> None:
        """The chat backend's state: a problem while it is broken or replaced, cleared when ready."""
        log.info("chat model: %s %s", status.state, status.message)
        if status.state in ("error", "fallback"):
            self.on_problem("chat model", status.message)
        elif status.state == "ready":
            self.on_problem("chat model", None)

    def _local_factory(self, chat: bool) -> Callable[[], Backend]:
        m = self.settings.model

        def make() -> Backend:
            if chat and m.chat_path.startswith("recorded:"):  # test/demo answers (quant/recorded.py)
                from codeflow.quant.recorded import RecordedBackend

                return RecordedBackend(m.chat_path.removeprefix("recorded:"))
            path = resolve_chat_model(m.chat_path) if chat else resolve_model(m.path)
            if path is None:
                from codeflow.quant.errors import ModelNotFoundError

                raise ModelNotFoundError("no chat model is set (model.chatPath is empty)")
            options = {
                "n_ctx": m.n_ctx, "n_gpu_layers": self._gpu_layers(path), "n_threads": m.n_threads,
                "kv_type": m.kv_type, "warm_slots": self.settings.completion.warm_documents,
            }
            if m.in_process:
                from codeflow.quant.local import LocalBackend

                return LocalBackend(path, **options)
            # A llama.cpp abort or an OOM kill takes the worker down, never the server.
            from codeflow.quant.worker import WorkerBackend

            return WorkerBackend(str(path), first_token_timeout_s=m.first_token_timeout_s,
                                 stall_timeout_s=m.stall_timeout_s, **options)

        return make

    def _gpu_layers(self, path: Path) -> int:
        """The configured layer count, or the planner's when it is -1 (auto)."""
        m = self.settings.model
        if m.n_gpu_layers >= 0:
            return m.n_gpu_layers
        try:
            from codeflow.quant.planner import plan_local

            plan = plan_local(path, n_ctx=m.n_ctx, kv_type=m.kv_type)
        except Exception as exc:  # planning is advice; without it, stay on the CPU
            self.on_problem("gpu", f"the GPU planner failed for {path.name} ({type(exc).__name__}: {exc}); "
                                   "running on the CPU (set model.nGpuLayers to choose yourself)")
            return 0
        return plan.n_gpu_layers if plan.backend == "local" else 0

    def _remote_factory(self, chat: bool) -> Callable[[], Backend]:
        r = self.settings.remote

        def make() -> Backend:
            from codeflow.quant.remote import RemoteBackend

            return RemoteBackend(r, chat=chat)

        return make

    def apply(self, settings: Settings) -> None:
        """Adopt new settings; backends whose inputs changed are rebuilt on next use."""
        old = self.settings
        self.settings = settings
        self.completion.settings = settings
        if (old.model, old.remote, old.backend) != (settings.model, settings.remote, settings.backend):
            self.completion.stop_all()
            with self._lock:
                stale = [b for b in (self._backend, self._chat) if b is not None]
                self._backend = self._chat = None
            if stale:
                # Waiting for the stopped jobs and closing the old models can take seconds (a hung
                # endpoint, a stopped worker), and this runs on the event loop: never there
                # (issue 12: a settings change during a hang held the loop 5 s).
                threading.Thread(target=self._retire, args=(stale,), name="codeflow-retire", daemon=True).start()

    def _retire(self, stale: list[FallbackBackend]) -> None:
        """Close replaced backends once the jobs stopped on them have ended (or after 5 s)."""
        self.completion.wait_idle(timeout=5.0)
        for backend in stale:
            backend.close()

    def start_context(
        self, roots: list[Path], progress: Callable[[int, int], None] | None = None, watch: bool = True
    ) -> None:
        """Index the workspace (in the background when watching) and feed completions with it."""
        if not roots or not self.settings.context.enabled:
            return
        try:
            from codeflow.context.engine import ContextEngine
        except ImportError as exc:
            self.on_problem("context", f"the context engine cannot load ({exc}); completions, actions and "
                                       "hovers go without cross-file context")
            return
        engine = ContextEngine(roots, self.settings.context.engine_config())
        if watch:
            engine.start(watch=True, on_progress=progress, on_problem=lambda m: self.on_problem("context", m))
        else:
            engine.index_now()
        self.engine = engine
        self.completion.context = EngineContext(self.settled_engine, roots[0])

    def settled_engine(self) -> ContextEngineAPI | None:
        """The context engine once every buffer update sent so far is applied (blocking: call it
        from a worker thread, never the event loop)."""
        if self.engine is not None and not self._closed:
            self._buffers.submit(lambda: None).result(timeout=30)
        return self.engine

    def _buffer_job(self, job: Callable[[], None]) -> None:
        """Run a buffer update on the one buffer thread: off the event loop, in arrival order."""
        def run() -> None:
            try:
                job()
            except Exception as exc:  # a broken buffer must not stop later updates
                log.exception("updating an open buffer in the context engine failed")
                self._buffer_failed = True
                self.on_problem("buffer", f"an open file could not be updated in the context engine "
                                          f"({type(exc).__name__}: {exc}); its context may be stale")
            else:
                if self._buffer_failed:
                    self._buffer_failed = False
                    self.on_problem("buffer", None)

        if self.engine is not None and not self._closed:
            self._buffers.submit(run)

    def set_buffer(self, path: Path, text: str) -> None:
        """An open, unsaved buffer: it overrides the file on disk for context (reparsed off the loop).
        One past `context.maxFileBytes` is not kept or parsed, and the user is told once."""
        if self.engine is not None:
            self._buffer_job(lambda: self._tell_size(path, self.engine.set_buffer(path, text)))

    def _tell_size(self, path: Path, kept: bool) -> None:
        feature = f"large file {path.name}"
        if kept:
            if feature in self._too_large:  # shrunk or closed: its context is back
                self._too_large.discard(feature)
                self.on_problem(feature, None)
            return
        if feature not in self._too_large:
            self._too_large.add(feature)
            self.on_problem(feature, f"{path.name} is larger than context.maxFileBytes "
                                     f"({self.settings.context.max_file_bytes} bytes): its open buffer is not "
                                     "parsed or used for context (raise the limit to include it)")

    def record_edit(self, path: Path, line: int, text: str) -> None:
        """Remember a recent edit (0-based line) for the context ranking."""
        if self.engine is not None:
            self._buffer_job(lambda: self.engine.record_edit(path, line, text))

    def drop_buffer(self, path: Path, key: str) -> None:
        """A closed document: back to the disk version, and its completion cache goes."""
        self.completion.forget(key)
        if self.engine is not None:
            self._buffer_job(lambda: (self.engine.drop_buffer(path), self._tell_size(path, True)))

    def pack_context(self, path: Path, text: str, line: int, col: int, budget: int | None = None) -> dict:
        """The packed context for a cursor, in the `codeflow context --json` shape."""
        if self.settled_engine() is None:
            return {"snippets": [], "dropped": [], "budget": budget or 0, "used": 0}
        backend = self._backend
        count = backend.count_tokens if backend is not None and backend.status is not None else None
        budget = budget or self.settings.context.budget_tokens
        packed = self.engine.query(path, text, line, col, budget, count, None)
        return msgspec.to_builtins(packed)

    def close(self) -> None:
        """Stop generation, the watcher and the models (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._buffers.shutdown(wait=False, cancel_futures=True)
        self.model_calls.shutdown(wait=False, cancel_futures=True)
        self.completion.stop_all()
        self.completion.wait_idle(timeout=2.0)
        if self.engine is not None:
            self.engine.stop()
        for backend in (self._backend, self._chat):
            if backend is not None:
                backend.close()
