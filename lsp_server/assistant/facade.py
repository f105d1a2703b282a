"""The assistant behind one facade: what the protocol layer asks of Codeflow (issue 17 §1).

Handlers in `lsp_server/` translate LSP messages into these calls and their results back; they
never reach into the runtime, the context engine or a backend. Blocking calls say so: the
server runs them off the event loop (model calls on the runtime's model threads).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from codeflow.context import edits
from codeflow.context.edits import EditPlan
from codeflow.context.pack import PackedContext
from codeflow.context.workspace import private_to
from codeflow.lsp_server.assistant import context_view, explain, instruct
from codeflow.lsp_server.assistant.completion import Completion, CompletionRequest
from codeflow.lsp_server.assistant.jobs import Job
from codeflow.lsp_server.assistant.runtime import Runtime
from codeflow.lsp_server.settings import Settings
from codeflow.quant.backend import CancelToken
from codeflow.quant.fallback import LocalOnlyBackend, Status

# Lookups that may fail and whose failure is reported to the user by the protocol layer.
ErrorSink = Callable[[Exception, str], None]


class Assistant:
    """Completions, code actions and explanations for one workspace; no pygls here."""

    def __init__(self, on_status: Callable[[Status], None], on_problem: Callable[[str, str | None], None],
                 on_error: ErrorSink) -> None:
        self.runtime = Runtime(Settings(), None, on_status)
        self.runtime.on_problem = on_problem
        self.roots: list[Path] = []
        self.explainer = explain.Explainer(self.runtime.chat_backend, self._chat_model_key,
                                           lambda exc: on_error(exc, ""))
        self.last_action = instruct.Stats()

    # Settings and lifecycle --------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self.runtime.settings

    def set_workspace(self, roots: list[Path], settings: Settings) -> None:
        """The workspace roots and the settings built for them (at initialize)."""
        self.roots = roots
        self.runtime.settings = settings
        self.runtime.workspace = roots[0] if roots else None

    def apply(self, settings: Settings) -> None:
        """Adopt new settings; models whose inputs changed are rebuilt on next use."""
        self.runtime.apply(settings)

    def loaded(self) -> bool:
        """Whether the completion model has been started (loaded, or failed with a status)."""
        return getattr(self.runtime.backend(), "status", None) is not None

    def load(self) -> Status | None:
        """Load the completion model (blocking)."""
        return self.runtime.load()

    @property
    def model_calls(self):  # noqa: ANN201 - concurrent.futures.Executor
        """The executor model calls run on (never the default one: a hung endpoint holds it)."""
        return self.runtime.model_calls

    def start_indexing(self, progress: Callable[[int, int], None] | None) -> bool:
        """Index and watch the roots in the background; False when there is no index to build."""
        self.runtime.start_context(self.roots, progress)
        return self.runtime.engine is not None

    def close(self) -> None:
        """Stop generating, watching and the models (idempotent, blocking)."""
        self.explainer.stop_all()
        self.runtime.close()

    # Documents ---------------------------------------------------------------------------------

    def set_buffer(self, path: Path, text: str) -> None:
        """An open, unsaved buffer overrides the disk for context (applied off the loop)."""
        self.runtime.set_buffer(path, text)

    def record_edit(self, path: Path, line: int, text: str) -> None:
        """A recent edit, for the context ranking."""
        self.runtime.record_edit(path, line, text)

    def drop_buffer(self, path: Path, key: str) -> None:
        """A closed document: its buffer and completion cache go."""
        self.runtime.drop_buffer(path, key)

    def is_private(self, path: str) -> bool:
        """Whether a file is private (secret, ignored, or outside every root), resolved."""
        engine = self.runtime.engine
        c = self.settings.context
        return engine.is_private(Path(path)) if engine is not None else \
            private_to(self.roots, path, c.exclude, c.secret_globs)

    def display_path(self, path: str) -> str:
        """A path relative to the workspace root, as prompts name it."""
        for root in self.roots:
            try:
                return Path(path).relative_to(root).as_posix()
            except ValueError:
                continue
        return Path(path).name

    def context_view(self, path: Path, text: str, line: int, col: int) -> dict:
        """The packed context for a cursor, `codeflow context --json`'s shape, plus `markdown`:
        the view that editors show as it is (blocking)."""
        packed = self.runtime.pack_context(path, text, line, col)
        where = f"{self.display_path(str(path))}:{line + 1}"
        return {**packed, "markdown": context_view.markdown(msgspec.convert(packed, PackedContext), where)}

    # Completions -------------------------------------------------------------------------------

    def begin_completion(self, key: str) -> CancelToken:
        """A new completion request for document `key`; it supersedes the previous one."""
        return self.runtime.completion.begin(key)

    def complete(self, req: CompletionRequest, cancel: CancelToken) -> Completion:
        """The completion for `req` (blocking); raises Cancelled when cancelled first."""
        return self.runtime.completion.complete(req, cancel)

    def completion_stats(self) -> dict:
        """The last completion job's diagnostics and the totals since the start."""
        service = self.runtime.completion
        return {**msgspec.to_builtins(service.last), "previous": msgspec.to_builtins(service.previous),
                "totals": msgspec.to_builtins(service.totals)}

    # Code actions ------------------------------------------------------------------------------

    def action_job(self) -> Job[instruct.Stats]:
        """A job for one action; running explanations yield the model to it."""
        self.explainer.stop_all()
        job: Job[instruct.Stats] = Job(instruct.Stats())
        self.last_action = job.stats
        return job

    def run_action(self, data: instruct.ActionData, path: Path, text: str, language: str,
                   job: Job[instruct.Stats], on_text: Callable[[str], None], local_only: bool) -> EditPlan:
        """Blocking: context, prompt, model and the checked edit plan for one action on `text`."""
        backend = self.runtime.chat_backend()
        if local_only:  # a private document: no fallback may send it to a remote endpoint
            backend = LocalOnlyBackend(backend)
        c = self.settings.context
        budget = c.budget_tokens if c.enabled else 0
        engine = self.runtime.settled_engine()

        def context_for(room: int) -> str:
            return instruct.gather_context(engine, path, text, data.start_line, min(budget, room), None)

        return instruct.run_action(backend, data, text, language, self.display_path(str(path)), context_for,
                                   job, on_text)

    @staticmethod
    def rebase(plan: EditPlan, data: instruct.ActionData, text: str, now_text: str, language: str) -> EditPlan:
        """The plan made again where the rewritten lines are in the document as it is now."""
        return edits.rebase_plan(plan, text, data.start_line, data.end_line, now_text, language)

    # Explanations ------------------------------------------------------------------------------

    def describe(self, path: Path, text: str, language: str, line: int, word: str) -> explain.Facts | None:
        """What is known about the function at a line, without the model (blocking)."""
        engine = self.runtime.settled_engine()
        return explain.describe(engine, path, self.display_path(str(path)), text, language, line, word)

    def instruct_stats(self) -> dict:
        """Timings of the last code action and the last explanation."""
        return {"action": msgspec.to_builtins(self.last_action),
                "explain": msgspec.to_builtins(self.explainer.last)}

    def _chat_model_key(self) -> str:
        s = self.settings
        return f"{s.backend}|{s.model.chat_path}|{s.remote.url}|{s.remote.chat_model}"

