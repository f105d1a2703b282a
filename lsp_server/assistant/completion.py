"""The completion pipeline shared by the server and `codeflow complete`.

A request builds a prompt (context first, prefix last), starts a generation job and returns as
soon as the first useful line (or, for a block, the whole block) exists. The job keeps running in
the background into a per-document cache, so typing through the ghost text, or accepting it and
asking for more, is served without the model. A newer request that the cache cannot serve, or a
cancelled one, stops the running job within one token step.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import msgspec

from codeflow.context.pack import estimate_tokens
from codeflow.context.postprocess import (MAX_LOGICAL_LINES, decide_multiline, logical_line, open_quote, postprocess,
                                          runaway_at)
from codeflow.context.prompt import BuiltPrompt, PromptFormat, build_prompt
from codeflow.lsp_server.assistant import budget as latency
from codeflow.lsp_server.assistant.jobs import Cancelled, Job
from codeflow.lsp_server.assistant.layout import (fit_budgets, keeps, prompt_format, spare_room, window,
                                                   window_start)
from codeflow.lsp_server.settings import Settings
from codeflow.quant.backend import Backend, CancelToken, GenOptions, GenStats, Prompt, close_stream

log = logging.getLogger(__name__)
# The share of the context budget that opens the prompt with what the file's imports define, the
# same at every cursor position (issue 16 §1); cursor-specific snippets get the rest.
FILE_SHARE = 0.5
# After a one-line answer, the background keeps generating this many more lines into the cache.
BACKGROUND_LINES = 1
# Code-like text whose evaluation measures the prompt speed at load (about 300 tokens).
CALIBRATION_TEXT = "".join(f"def handler_{i}(request, user_id: int) -> dict:\n    return {{'id': user_id, 'n': {i}}}\n"
                           for i in range(12))
# A new job polls the jobs it stopped this often while it waits for them to end.
WAIT_FOR_PRIOR_S = 0.02
# Token healing: the prompt stops before the identifier being typed and the spaces before it (or
# trailing spaces), and the answer must start with them. Otherwise the model is asked to continue
# half a token: "user = U" became "UUser", and "user = " (a lone space token) made it write "0".
WORD_TAIL = re.compile(r"(?:(?<=\S)[ \t]+)?[A-Za-z_][A-Za-z0-9_]{0,31}$|(?<=\S)[ \t]+$")


class CompletionRequest(msgspec.Struct, kw_only=True, frozen=True):
    """One completion at a cursor; `prefix`/`suffix` are the whole document split there."""

    key: str
    path: str
    language: str
    prefix: str
    suffix: str
    invoked: bool = False
    # A private document (secret, ignored, outside the roots): its prompt never goes remote.
    local_only: bool = False


class Completion(msgspec.Struct, kw_only=True, frozen=True):
    """What to show, and how it was made."""

    text: str
    multiline: bool
    from_cache: bool
    prompt_kind: str


class Stats(GenStats, kw_only=True):
    """Diagnostics of the last completion job (the `codeflow/stats` request)."""

    key: str = ""
    prompt_kind: str = ""
    cache_hits: int = 0
    prompt: str = ""
    # Generation stopped because the text started repeating itself (issue 14).
    runaway: bool = False
    # The full prompt the latency budget cut was evaluated after the answer (issue 16 §2).
    warmed: bool = False
    # Estimated prompt tokens the backend evaluates: those past the common prefix with the
    # document's previous prompt (its KV cache keeps the rest).
    new_tokens: int = 0
    # The latency budget's prompt tokens for an automatic request (0: not limited).
    allowance: int = 0


class Totals(msgspec.Struct, kw_only=True):
    """Cumulative counters since the server started (the `codeflow/stats` request's `totals`)."""

    requests: int = 0
    # Requests answered empty because a newer one for the same document arrived first.
    superseded: int = 0
    cache_hits: int = 0
    generations_started: int = 0
    generations_cancelled: int = 0
    generations_finished: int = 0
    # Jobs cancelled before they reached the model (a newer request came while they waited).
    generations_skipped: int = 0
    tokens_after_cancel: int = 0
    in_flight: int = 0
    in_flight_max: int = 0


class ContextSource(Protocol):
    """Gives rendered cross-file context for a request, within a token budget."""

    def context_text(
        self, req: CompletionRequest, budget: int, count_tokens: Callable[[str], int], file_sep: str | None,
        file_budget: int = 0, window_start: int | None = None,
    ) -> str:
        """Snippets with their path headers, ready to put before the current file; the first
        `file_budget` tokens for what stays the same across the file (see FILE_SHARE). The rest
        may stay as it was while the prefix window starts at `window_start`."""
        ...


def continuation(raw: str, typed: str) -> tuple[bool | None, str]:
    """What the model wrote past what the user typed after the prompt's end.

    (True, text) when it agrees with the typed text; (False, "") when it went elsewhere;
    (None, "") while too little is generated to tell. Held-back spaces are lenient: a model
    may choose its own spacing there, and what the user typed stays as typed.
    """
    if raw.startswith(typed):
        return True, raw[len(typed):]
    if not typed.strip():
        stripped = raw.lstrip(" \t")
        return (True, stripped) if stripped or len(raw) > len(typed) else (None, "")
    if typed.startswith(raw):
        return None, ""
    return False, ""


class _Job(Job[Stats]):
    """A completion's generation, with the request and prompt it answers."""

    # The full prompt, when the latency budget cut this one: evaluated after the answer.
    full: BuiltPrompt | None = None

    def __init__(self, req: CompletionRequest, base: str, built: BuiltPrompt, multiline: bool) -> None:
        super().__init__(Stats(key=req.key, prompt_kind=built.kind, prompt_chars=len(built.text), prompt=built.text),
                         key=req.key)
        self.req = req
        # The prompt ends at `base`: the prefix without the word being typed (token healing).
        self.base = base
        self.built = built
        self.multiline = multiline


class CompletionService:
    """Completions for many documents from one backend, with a per-document cache."""

    def __init__(
        self,
        backend: Callable[[], Backend],
        settings: Settings,
        context: ContextSource | None = None,
        stable: bool = True,
    ) -> None:
        self._backend = backend
        self.settings = settings
        self.context = context
        # Prefix windows keep their start across cursor moves (issue 16 §1); off: the layout
        # before it, for `codeflow bench latency`.
        self.stable = stable
        self._jobs: dict[str, _Job] = {}
        # The newest request's token per document: a newer request sets the older one's.
        self._tickets: dict[str, CancelToken] = {}
        # Jobs whose thread has not ended, replaced in `_jobs` or not: a new job waits for them.
        self._live: set[_Job] = set()
        self._lock = threading.Lock()
        self.last = Stats()
        self.previous = Stats()
        self.totals = Totals()
        self.prefill = latency.PrefillMeter()
        # The last prompt sent per document: what its KV state in the backend starts with.
        self._sent: dict[str, str] = {}
        # The first line of each document's last prefix window (see `_kept_start`).
        self._starts: dict[str, int] = {}

    def begin(self, key: str) -> CancelToken:
        """The cancel token of a new request for document `key`; it supersedes the previous one.

        Clients that never send `$/cancelRequest` (Neovim's plain client, many plugins) left every
        keystroke's request running: 157 generations in flight for 200 keystrokes (issue 12).
        """
        token = CancelToken()
        with self._lock:
            old = self._tickets.get(key)
            self._tickets[key] = token
            self.totals.requests += 1
        if old is not None and not old.cancelled:
            old.cancel()
            with self._lock:
                self.totals.superseded += 1
        return token

    def complete(self, req: CompletionRequest, cancel: CancelToken) -> Completion:
        """Blocking: the completion for `req`; raises Cancelled when `cancel` is set first."""
        if cancel.cancelled:  # superseded while it waited for a thread: start nothing
            raise Cancelled()
        # Decided once per request: it parses the document (issue 17 §2).
        multiline = decide_multiline(req.prefix, req.suffix, req.language, req.invoked)
        hit = self._cached(req, multiline)
        job = hit if hit else self._start(req, cancel, multiline)
        typed = req.prefix[len(job.base):]

        def ready(raw: str) -> bool:
            ok, text = continuation(raw, typed)
            if ok is None:
                return False
            return not ok or self._enough(job, text, req, multiline)

        try:
            raw = job.wait(ready, cancel)
        except Cancelled:
            if not self._superseded(req.key, cancel):
                job.cancel.cancel()  # the client gave up; a newer request may still read this job
            raise
        if job.error is not None and not raw:
            raise job.error
        if job.error is not None:
            # The backend failed after these pieces (a stream cut before [DONE], a malformed
            # chunk, a crash): the text is incomplete and never shown (issue 12). The backend
            # reported the failure already.
            raw = ""
        ok, text = continuation(raw, typed)
        text = postprocess(text, req.prefix, req.suffix, multiline=multiline, language=req.language,
                               max_lines=self._max_lines(req)) if ok else ""
        if hit:
            job.stats.cache_hits += 1
            with self._lock:
                self.totals.cache_hits += 1
        return Completion(text=text, multiline=multiline, from_cache=hit is not None, prompt_kind=job.built.kind)

    def _superseded(self, key: str, cancel: CancelToken) -> bool:
        """Whether a newer request for `key` (see `begin`) replaced the one holding `cancel`."""
        with self._lock:
            newest = self._tickets.get(key)
        return newest is not None and newest is not cancel

    def stream(self, req: CompletionRequest, cancel: CancelToken) -> Iterator[str]:
        """Blocking generator of the shown text as it grows, line by line (for the CLI)."""
        multiline = decide_multiline(req.prefix, req.suffix, req.language, req.invoked)
        job = self._start(req, cancel, multiline)
        typed = req.prefix[len(job.base):]
        shown, seen = "", -1
        try:
            while True:
                whole = job.wait(lambda r: len(r) != seen, cancel)
                seen = len(whole)
                if job.done and job.error is not None:
                    raise job.error  # its unfinished last line is incomplete: never shown (issue 12)
                ok, raw = continuation(whole, typed)
                if ok is False:
                    return
                finished = job.done or (ok is True and self._enough(job, raw, req, multiline))
                upto = raw if finished else raw[: raw.rfind("\n") + 1]
                text = postprocess(upto, req.prefix, req.suffix, multiline=multiline, language=req.language,
                               max_lines=self._max_lines(req))
                if text.startswith(shown) and len(text) > len(shown):
                    yield text[len(shown):]
                    shown = text
                if finished:
                    return
        finally:
            job.cancel.cancel()

    @staticmethod
    def _line_parts(raw: str, req: CompletionRequest) -> tuple[str, str, str, str]:
        """(raw, the cursor line before the cursor, the rest of that line, the string open at the
        cursor) for `logical_line`."""
        line_before, tail = req.prefix.rsplit("\n", 1)[-1], req.suffix.split("\n", 1)[0]
        return raw, line_before, tail, open_quote(req.prefix, req.language)

    def _background_done(self, job: _Job) -> bool:
        """Whether a one-line job holds its logical line and BACKGROUND_LINES more lines."""
        raw = job.text
        if raw.count("\n") > MAX_LOGICAL_LINES + BACKGROUND_LINES:
            return True
        first = logical_line(*self._line_parts(raw, job.req), final=False)
        return first is not None and raw[len(first) + 1:].count("\n") >= BACKGROUND_LINES

    def _max_lines(self, req: CompletionRequest) -> int:
        """The most lines an as-you-type block shows (0: no limit, for an invoked request)."""
        return 0 if req.invoked else self.settings.completion.max_lines_automatic

    def _enough(self, job: _Job, raw: str, req: CompletionRequest, multiline: bool) -> bool:
        """Single line: once the line is complete. Block: once it leaves its scope, reaches its
        line limit, or the token cap."""
        cfg = self.settings.completion
        if job.stats.tokens >= (cfg.max_tokens_invoked if multiline else cfg.max_tokens):
            return True
        if not multiline:
            return (raw.count("\n") >= MAX_LOGICAL_LINES
                    or logical_line(*self._line_parts(raw, req), final=False) is not None)
        if "\n" not in raw.lstrip("\n"):
            return False
        if 0 < self._max_lines(req) < raw.lstrip("\n").count("\n"):
            return True
        complete = raw[: raw.rfind("\n")]
        shown = postprocess(complete, req.prefix, req.suffix, multiline=True, language=req.language)
        return len(shown) < len(complete.rstrip())

    def _cached(self, req: CompletionRequest, multiline: bool) -> _Job | None:
        """The job whose output continues what the user has typed since its prompt ended."""
        with self._lock:
            job = self._jobs.get(req.key)
        if job is None or job.error is not None or job.req.suffix != req.suffix:
            return None
        if not req.prefix.startswith(job.req.prefix):
            return None
        if req.invoked and job.full is not None:
            # Asked for: the whole prompt, not the answer to one cut to the latency budget.
            return None
        if req.invoked and not job.multiline and multiline:
            # A manual trigger asks for a block; this job wrote one line on a small budget, and
            # reusing it showed the same one-line item again (issue 13).
            return None
        typed = req.prefix[len(job.base):]
        raw, done = job.text, job.done  # read done last: a finished job's text is final
        if raw.startswith(typed) and (len(raw) > len(typed) or not done):
            return job
        return None

    def _start(self, req: CompletionRequest, cancel: CancelToken, multiline: bool) -> _Job:
        """Stop whatever runs (one model, one stream) and start a job for `req`; it reaches the
        model once the stopped jobs have ended, so at most one generation runs at a time."""
        self.stop_all()
        backend = self._backend()
        base, built, full, max_tokens = self._prompts(req, backend, multiline)
        job = _Job(req, base, built, multiline)
        job.full = full
        job.stats.new_tokens = latency.new_tokens(built.text, self._sent.get(req.key, ""))
        job.stats.allowance = self.allowance(req, backend)
        opts = GenOptions(max_tokens=max_tokens, temperature=self.settings.completion.temperature, stop=built.stop)
        with self._lock:
            if cancel.cancelled:  # superseded while its prompt was built
                self.totals.generations_skipped += 1
                raise Cancelled()
            # Taken with the new job's entry, so concurrent requests queue up one behind another.
            before = list(self._live)
            self._jobs[req.key] = job
            self._sent[req.key] = built.text
            self._live.add(job)
            self.previous, self.last = self.last, job.stats  # live: counts grow while it runs
        for prior in before:
            prior.cancel.cancel()
        thread = threading.Thread(target=self._run, args=(job, backend, opts, before), daemon=True,
                                  name="codeflow-gen")
        thread.start()
        return job

    def prompt_for(self, req: CompletionRequest, backend: Backend, multiline: bool) -> tuple[str, BuiltPrompt, int]:
        """(prompt end in the document, the prompt, the token budget) for a request."""
        base, built, _, max_tokens = self._prompts(req, backend, multiline)
        return base, built, max_tokens

    def _prompts(self, req: CompletionRequest, backend: Backend,
                 multiline: bool) -> tuple[str, BuiltPrompt, BuiltPrompt | None, int]:
        """`prompt_for`, plus the full prompt when the latency budget cut this one (else None)."""
        cfg = self.settings.completion
        max_tokens = (cfg.max_tokens_invoked if multiline else cfg.max_tokens) + cfg.background_tokens
        fragment = WORD_TAIL.search(req.prefix[-64:])
        base = req.prefix[: len(req.prefix) - len(fragment.group(0))] if fragment else req.prefix
        fmt = prompt_format(backend.info)
        built = self._build(req, base, fmt, backend, max_tokens)
        limit = self.allowance(req, backend)
        if limit and latency.new_tokens(built.text, self._sent.get(req.key, "")) > limit:
            # Too much is new to evaluate within the latency budget: a prompt that fits from scratch
            # now, and the full one evaluated once the answer is out (see `_warm`).
            return base, self._build(req, base, fmt, backend, max_tokens, limit), built, max_tokens
        return base, built, None, max_tokens

    def allowance(self, req: CompletionRequest, backend: Backend) -> int:
        """The prompt tokens an automatic request may have evaluated (issue 16 §2); 0 for an invoked
        one, which keeps the full budget."""
        device = backend.info.device
        if req.invoked or device.startswith("remote"):  # a server's prompt speed is not this machine's
            return 0
        ms = latency.budget_ms(self.settings.completion.latency_budget_ms, device)
        return latency.allowance(ms, self.prefill.speed(device))

    def _build(
        self, req: CompletionRequest, base: str, fmt: PromptFormat, backend: Backend, max_tokens: int,
        limit: int = 0,
    ) -> BuiltPrompt:
        """The prompt: the file's context block, cursor snippets, prefix window, suffix; with
        `limit`, budgets that fit that many tokens from scratch."""
        cfg = self.settings.context
        budget, prefix_tokens, suffix_tokens = fit_budgets(
            backend.info.n_ctx, max_tokens, cfg.budget_tokens, cfg.prefix_tokens, cfg.suffix_tokens
        )
        if limit:
            budget, prefix_tokens, suffix_tokens = latency.shares(limit, budget, prefix_tokens, suffix_tokens)
        fresh = window_start(base, prefix_tokens)
        start = self._kept_start(req, base, fresh, min(2 * prefix_tokens, prefix_tokens + budget), limit)
        prefix, suffix = window(base, req.suffix, prefix_tokens, suffix_tokens, start)
        # Taken before the spare room, which moves with the cursor: the file block must not.
        file_budget = int(budget * FILE_SHARE)
        if not limit:
            # From the window as placed afresh: a kept start must not move the context budget.
            spare = spare_room(*window(base, req.suffix, prefix_tokens, suffix_tokens, fresh),
                               prefix_tokens, suffix_tokens)
            budget = min(cfg.budget_tokens, budget + spare)
        context = ""
        if self.context is not None and cfg.enabled and budget > 0:
            try:
                # A private document's text must not reach a remote tokenizer either: estimate.
                count = estimate_tokens if req.local_only else backend.count_tokens
                context = self.context.context_text(req, budget, count, fmt.file_sep, file_budget, start)
            except Exception:  # a context failure must not cost the user the completion
                log.exception("context retrieval failed for %s; completing without it", req.path)
        return build_prompt(fmt, context=context, prefix=prefix, suffix=suffix, path=req.path, language=req.language)

    def _kept_start(self, req: CompletionRequest, base: str, fresh: int, tokens: int, limit: int) -> int:
        """The window start for this request (issue 16 §1): an automatic request keeps the
        document's previous start while the cursor stays below it and the window fits `tokens`
        (up to twice the prefix budget: the kept part is in the KV cache and costs nothing), so
        a jump within the window reuses the whole prompt before it. A manual request, a latency-
        limited prompt or a window that outgrew it starts afresh."""
        with self._lock:
            kept = self._starts.get(req.key)
        if limit:  # a prompt cut to the latency budget for now; the full one keeps the start
            return fresh
        sticky = self.stable and not req.invoked
        start = kept if sticky and kept != fresh and keeps(base, kept, tokens) else fresh
        with self._lock:
            self._starts[req.key] = start
        return start

    def _run(self, job: _Job, backend: Backend, opts: GenOptions, before: list[_Job]) -> None:
        prompt = Prompt(text=job.built.text, kind=job.built.kind, key=job.req.key, local_only=job.req.local_only,
                        lead=job.req.prefix[len(job.base):])
        error: Exception | None = None
        if not self._await_turn(job, before):
            job.stats.cancelled = True
            self._end(job, None)
            return
        try:
            job.stream(backend, prompt, opts, lambda text, piece: self._stop_after(job, piece))
        except Exception as exc:  # reported to the waiting request, and logged
            log.warning("generation failed: %s", exc)
            job.stats.error = str(exc)
            error = exc
        self._count_end(job)
        if error is None:  # a job stopped after its first token measured its prompt all the same
            self.prefill.observe(job.stats.new_tokens, job.stats.first_token_s)
        if error is None and job.full is not None and not job.cancel.cancelled:
            self._warm(job, backend)
        self._end(job, error)
        log.debug("job %s: %d tokens, first after %.3fs", job.req.key, job.stats.tokens, job.stats.first_token_s)

    def _warm(self, job: _Job, backend: Backend) -> None:
        """Evaluate the full prompt the latency budget cut (issue 16 §2) while the user reads the
        answer, so that the next request here can afford it from the KV cache. A newer request
        cancels this between two prompt batches; what was evaluated by then stays cached."""
        full = job.full
        assert full is not None
        prompt = Prompt(text=full.text, kind=full.kind, key=job.req.key, local_only=job.req.local_only)
        try:
            _first_token(backend, prompt, job.cancel)
        except Exception as exc:  # a failed warm-up costs only the next request's reuse
            log.debug("warming the full prompt failed: %s", exc)
            return
        if not job.cancel.cancelled:
            with self._lock:
                self._sent[job.req.key] = full.text
            job.stats.warmed = True

    def calibrate(self) -> None:
        """Measure this machine's prompt speed once the model is loaded (issue 16 §2), so that the
        first automatic request is sized from a measurement rather than the default."""
        backend = self._backend()
        if backend.info.device.startswith("remote"):
            return
        for i in range(2):  # the first evaluation after a load also pays one-time costs
            text = f"# {i}\n{CALIBRATION_TEXT}"
            started = time.perf_counter()
            _first_token(backend, Prompt(text=text, key=f"codeflow:calibrate:{i}"), CancelToken())
            if i:
                self.prefill.observe(backend.count_tokens(text), time.perf_counter() - started)

    def _stop_after(self, job: _Job, piece: str) -> bool:
        """Whether the model can stop after this piece."""
        if "\n" not in piece:
            return False
        if runaway_at(job.text) is not None:
            # A completion that repeats itself only grows: stop the model, not just the display.
            job.stats.runaway = True
            return True
        # The cache serves typing through the line and accepting it, then the next line;
        # generating further kept the CPU busy 2 s after a storm (issue 12's soak).
        return not job.multiline and self._background_done(job)

    def _await_turn(self, job: _Job, before: list[_Job]) -> bool:
        """Wait for the stopped jobs to end (each stops within a token or a prompt batch), then
        count the job as in flight; False when it was cancelled meanwhile (it never runs)."""
        for prior in before:
            while not prior.wait_done(WAIT_FOR_PRIOR_S) and not job.cancel.cancelled:
                pass
        with self._lock:
            if job.cancel.cancelled:
                self.totals.generations_skipped += 1
                return False
            self.totals.generations_started += 1
            self.totals.in_flight += 1
            self.totals.in_flight_max = max(self.totals.in_flight_max, self.totals.in_flight)
        return True

    def _end(self, job: _Job, error: Exception | None) -> None:
        job.finish(error)
        with self._lock:
            self._live.discard(job)

    def _count_end(self, job: _Job) -> None:
        with self._lock:
            self.totals.in_flight -= 1
            self.totals.tokens_after_cancel += job.cancel.tokens_after_cancel
            if job.cancel.cancelled:
                self.totals.generations_cancelled += 1
            else:
                self.totals.generations_finished += 1

    def stop_all(self) -> None:
        """Cancel every running job (their output so far stays cached)."""
        with self._lock:
            jobs = list(self._live)
        for job in jobs:
            if not job.done:
                job.cancel.cancel()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no job runs (for tests, benchmarks and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            jobs = list(self._live)
        return all(job.wait_done(max(0.0, deadline - time.monotonic())) for job in jobs)

    def forget(self, key: str) -> None:
        """Drop a closed document's job and cache."""
        with self._lock:
            job = self._jobs.pop(key, None)
            ticket = self._tickets.pop(key, None)
            self._sent.pop(key, None)
            self._starts.pop(key, None)
        if ticket is not None:
            ticket.cancel()
        if job is not None:
            job.cancel.cancel()


def _first_token(backend: Backend, prompt: Prompt, cancel: CancelToken) -> None:
    """Evaluate a prompt into the backend's KV cache, up to its first generated token."""
    pieces = backend.stream(prompt, GenOptions(max_tokens=1), cancel)
    try:
        next(iter(pieces), None)
    finally:
        close_stream(pieces)
