"""One generation job for completions, code actions and explanations (issue 17 §1).

A job runs a backend stream on a worker thread; its text grows piece by piece, readers wait for
what they need (a line, a sentence, the end), and its cancel token stops the model within one
token step. Completions keep jobs in a per-document cache, explanations by function; both use
this one type, so cancellation, timing and error handling are the same everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from codeflow.quant.backend import Backend, CancelToken, GenOptions, GenStats, Prompt, close_stream

S = TypeVar("S", bound=GenStats)
# How long a waiter sleeps between checks of its own cancel token (set from another thread).
WAIT_STEP_S = 0.02


class Cancelled(Exception):
    """The request was cancelled while it waited for the model."""


class Job(Generic[S]):
    """One generation, growing `text` from a worker thread."""

    def __init__(self, stats: S, key: str = "") -> None:
        self.key = key
        self.stats = stats
        self.cancel = CancelToken()
        self.text = ""
        self.done = False
        self.error: Exception | None = None
        # Readers that keep the job alive: a job nobody waits for may be stopped for another.
        self.waiters = 0
        self._cond = threading.Condition()

    def append(self, piece: str) -> None:
        """Add generated text and wake the readers."""
        with self._cond:
            self.text += piece
            self._cond.notify_all()

    def replace(self, text: str) -> None:
        """Set the whole text (a cleaned-up final answer) and wake the readers."""
        with self._cond:
            self.text = text
            self._cond.notify_all()

    def finish(self, error: Exception | None = None) -> None:
        """Mark the job ended, with the error that ended it, if any."""
        with self._cond:
            self.done = True
            self.error = error
            self._cond.notify_all()

    def wait(self, ready: Callable[[str], bool], cancel: CancelToken | None = None,
             timeout: float | None = None) -> str:
        """Block until `ready(text)`, the job ends, `cancel` is set (raises Cancelled) or
        `timeout` seconds pass; return the text."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled()
                if self.done or ready(self.text):
                    return self.text
                left = WAIT_STEP_S if deadline is None else min(WAIT_STEP_S, deadline - time.monotonic())
                if left <= 0:
                    return self.text
                self._cond.wait(timeout=left)

    def wait_done(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for the job to end; True when it has."""
        self.wait(lambda text: False, timeout=timeout)
        return self.done

    def stream(self, backend: Backend, prompt: Prompt, opts: GenOptions,
               stop_after: Callable[[str, str], bool] = lambda text, piece: False) -> str:
        """Run the model into this job (blocking) and return the text; timing and token counts go
        to `stats`. `stop_after(text, piece)` ends generation early (the model stops, not only
        the display); it may raise to refuse the answer. The stream is closed in every case, so a
        cancelled or refused answer stops the model at once."""
        started = time.perf_counter()
        self.stats.prompt_chars = len(prompt.text)
        pieces = backend.stream(prompt, opts, self.cancel)
        try:
            for piece in pieces:
                if self.stats.tokens == 0:
                    self.stats.first_token_s = time.perf_counter() - started
                self.stats.tokens += 1
                self.append(piece)
                if stop_after(self.text, piece):
                    break
        finally:
            close_stream(pieces)
            self.stats.total_s = time.perf_counter() - started
            self.stats.cancelled = self.cancel.cancelled
            self.stats.tokens_after_cancel = self.cancel.tokens_after_cancel
        return self.text
