"""The run-time fallback policy between the planned backend and the other one (issue 5, item 7).

- A load or allocation failure, a worker crash, or `max_timeouts` timeouts in a row leave a side.
- Leaving local goes to remote when one is configured; leaving remote goes back to local when it
  can run. With nowhere to go, completions come back empty and the status says why.
- A side that failed to load, or crashed `max_crashes` times in a row, is not tried again.
- Once switched, it stays on the new side while that works: no flapping.
Every change is reported through `on_status` (identical reports are sent once), and each switch
once more through `on_switch`, for a `window/showMessage`. A failure after part of an answer was
yielded is raised as well, once reported: that part is incomplete and must not be used.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Literal

import msgspec

from .backend import Backend, CancelToken, GenOptions, ModelInfo, Prompt, close_stream
from .errors import (BackendTimeoutError, LocalOnlyError, ModelLoadError, QuantError, RemoteError,
                     WorkerCrashError)

log = logging.getLogger(__name__)

BackendKind = Literal["local", "remote"]
NO_MODEL = ModelInfo(name="none", device="none")


class Status(msgspec.Struct, kw_only=True, frozen=True):
    """What the `codeflow/status` notification carries."""

    backend: Literal["local", "remote", "none"]
    device: str = ""
    model: str = ""
    state: Literal["loading", "ready", "generating", "error", "fallback"]
    message: str = ""


class _Side:
    """One backend choice: how to build it, the live instance, and its failure counters."""

    def __init__(self, kind: BackendKind, factory: Callable[[], Backend] | None) -> None:
        self.kind = kind
        self.factory = factory
        self.backend: Backend | None = None
        self.broken = ""
        self.crashes = 0
        self.timeouts = 0

    @property
    def usable(self) -> bool:
        return self.factory is not None and not self.broken

    def drop(self) -> None:
        """Close the live backend; the factory builds a new one when needed."""
        backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:
                log.exception("closing the %s backend failed", self.kind)


class FallbackBackend:
    """A `Backend` that switches between two others instead of raising; see the module doc."""

    def __init__(
        self,
        primary_factory: Callable[[], Backend] | None,
        secondary_factory: Callable[[], Backend] | None,
        on_status: Callable[[Status], None],
        *,
        primary_kind: BackendKind = "local",
        max_timeouts: int = 2,
        max_crashes: int = 3,
        report_generating: bool = True,
        on_switch: Callable[[Status], None] | None = None,
    ) -> None:
        other: BackendKind = "remote" if primary_kind == "local" else "local"
        self._primary = _Side(primary_kind, primary_factory)
        self._secondary = _Side(other, secondary_factory)
        self._active = self._primary
        self._on_status = on_status
        self._on_switch = on_switch
        self._max_timeouts = max(1, max_timeouts)
        self._max_crashes = max(1, max_crashes)
        self._report_generating = report_generating
        self._lock = threading.RLock()
        self._last: Status | None = None
        self._why = ""

    @property
    def status(self) -> Status | None:
        """The last status reported."""
        return self._last

    @property
    def active(self) -> Literal["local", "remote", "none"]:
        """Which side serves requests now."""
        with self._lock:
            return self._active.kind if self._active.usable else "none"

    @property
    def info(self) -> ModelInfo:
        """The serving model's description; loads the active side if needed."""
        side = self.start()
        backend = side.backend if side is not None else None
        return backend.info if backend is not None else NO_MODEL

    def start(self) -> _Side | None:
        """Load the active side (switching if it cannot load); None when nothing can run."""
        with self._lock:
            for side in (self._active, self._other(self._active)):
                if side.usable and (side.backend is not None or self._load(side)):
                    why = "" if side is self._active else f"{self._active.broken}; using the {side.kind} backend"
                    self._switch_to(side, why)
                    return side
            self._report_none()
            return None

    def _other(self, side: _Side) -> _Side:
        return self._secondary if side is self._primary else self._primary

    def _load(self, side: _Side) -> bool:
        """Build a side's backend; a failure marks it broken and is reported."""
        assert side.factory is not None
        self._report(Status(backend=side.kind, state="loading", message=f"starting the {side.kind} model"))
        try:
            side.backend = side.factory()
        except Exception as exc:
            side.broken = f"{side.kind} backend cannot start: {exc}"
            log.warning("%s", side.broken, exc_info=not isinstance(exc, QuantError))
            self._report(Status(backend=side.kind, state="error", message=side.broken))
            return False
        return True

    def _switch_to(self, side: _Side, why: str) -> None:
        """Make `side` active and report it ready (or in fallback, if it is not the planned one)."""
        if side is self._active:
            self._report_ready(side)
            return
        log.warning("switching from %s to %s backend: %s", self._active.kind, side.kind, why)
        self._active = side
        if side is not self._primary:
            self._why = why  # kept, so that every later fallback report reads the same
        self._report_ready(side, why)
        if self._on_switch is not None and self._last is not None:
            _call(self._on_switch, self._last)

    def _report_ready(self, side: _Side, message: str = "") -> None:
        assert side.backend is not None
        info = side.backend.info
        fallback = side is not self._primary
        if not message:
            message = self._why if fallback else f"{info.name} on {info.device}"
        state: Literal["ready", "fallback"] = "fallback" if fallback else "ready"
        self._report(Status(backend=side.kind, device=info.device, model=info.name, state=state, message=message))

    def _report_none(self) -> None:
        reasons = [s.broken for s in (self._primary, self._secondary) if s.broken]
        message = "; ".join(reasons) or "no backend is configured"
        self._report(Status(backend="none", device="none", state="error", message=message))

    def _report(self, status: Status) -> None:
        if status == self._last:
            return
        self._last = status
        _call(self._on_status, status)

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Yield pieces from the active side; on failure switch as the policy says. A failure
        before the first piece is never raised; one after it is, once reported."""
        tried: set[str] = set()
        while not cancel.cancelled:
            side = self._pick(tried)
            if prompt.local_only and side is not None and side.kind == "remote":
                side = self._local_side(tried)
            backend = side.backend if side is not None else None
            if side is None or backend is None:
                return
            sent = 0
            pieces: Iterator[str] = iter(())
            try:
                if self._report_generating:
                    self._report_state(side, "generating")
                pieces = backend.stream(prompt, opts, cancel)
                for piece in pieces:
                    sent += 1
                    yield piece
            except Exception as exc:
                old_info = backend.info
                target = self._failed(side, exc)
                tried.add(side.kind)
                if sent:
                    # Part of an answer is out, and it is incomplete: the caller must discard it,
                    # so it hears of the failure (issue 12: a cut stream was shown as a completion).
                    raise
                if target is None or not _same_format(prompt, old_info, target):
                    return
                continue
            finally:
                close_stream(pieces)
            self._succeeded(side)
            return

    def _pick(self, tried: set[str]) -> _Side | None:
        with self._lock:
            if self._active.kind in tried:
                return None
            side = self.start()
            return None if side is None or side.kind in tried else side

    def _local_side(self, tried: set[str]) -> _Side | None:
        """The local side for a private prompt, loaded; raises LocalOnlyError when there is none.

        The active side stays as it is: only this prompt is kept off the remote endpoint."""
        with self._lock:
            local = self._primary if self._primary.kind == "local" else self._secondary
            if "local" in tried:
                return None  # it failed on this prompt already; the failure was reported
            if local.usable and (local.backend is not None or self._load(local)):
                return local
            why = local.broken or "no local backend is configured"
        raise LocalOnlyError(f"not sent to the remote endpoint: the document is private (a secret or"
                             f" ignored file, or outside the workspace) and {why}")

    def _report_state(self, side: _Side, state: Literal["generating", "error"], message: str = "") -> None:
        with self._lock:
            info = side.backend.info if side.backend is not None else NO_MODEL
            self._report(Status(backend=side.kind, device=info.device, model=info.name, state=state, message=message))

    def _succeeded(self, side: _Side) -> None:
        with self._lock:
            side.crashes = side.timeouts = 0
            if side is self._active and side.backend is not None:
                self._report_ready(side)

    def _failed(self, side: _Side, exc: Exception) -> _Side | None:
        """Record a failure; returns the side now active if the policy switched, else None."""
        with self._lock:
            message = f"{side.kind} backend failed: {exc}"
            if not isinstance(exc, QuantError):
                log.exception("unexpected error from the %s backend", side.kind)
            else:
                log.warning("%s", message)
            if not self._leaves(side, exc):
                self._report_state(side, "error", message)
                return None
            target = self._other(side)
            if target.usable and (target.backend is not None or self._load(target)):
                self._switch_to(target, f"{message}; using the {target.kind} backend")
                return target
            if side.usable:
                self._report_state(side, "error", message)
            else:
                self._report_none()
            return None

    def _leaves(self, side: _Side, exc: Exception) -> bool:
        """Whether this failure means leaving `side` (and what to mark on it)."""
        if isinstance(exc, BackendTimeoutError):
            side.timeouts += 1
            if side.timeouts < self._max_timeouts:
                return False
            side.timeouts = 0
            return True
        if isinstance(exc, WorkerCrashError):
            side.crashes += 1
            side.drop()
            if side.crashes >= self._max_crashes:
                side.broken = f"{side.kind} backend crashed {side.crashes} times in a row: {exc}"
            return True
        if isinstance(exc, (ModelLoadError, MemoryError)):
            side.broken = f"{side.kind} backend cannot allocate or load: {exc}"
            side.drop()
            return True
        return isinstance(exc, RemoteError)

    def count_tokens(self, text: str) -> int:
        """The active model's count; an over-estimate when it cannot answer."""
        side = self.start()
        if side is not None and side.backend is not None:
            try:
                return side.backend.count_tokens(text)
            except QuantError as exc:
                log.warning("counting tokens with the %s backend failed: %s", side.kind, exc)
        return len(text) // 3 + 1

    def close(self) -> None:
        """Close both sides."""
        with self._lock:
            self._primary.drop()
            self._secondary.drop()


class LocalOnlyBackend:
    """A view of a backend whose every prompt is `local_only`: for a private document's requests
    (code actions), so that no fallback sends them to a remote endpoint (issue 11, section 3)."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    @property
    def info(self) -> ModelInfo:
        """The inner backend's model."""
        return self._inner.info

    @property
    def status(self) -> Status | None:
        """The inner backend's last status, if it reports one."""
        return getattr(self._inner, "status", None)

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """The inner stream, with the prompt marked local-only."""
        return self._inner.stream(msgspec.structs.replace(prompt, local_only=True), opts, cancel)

    def count_tokens(self, text: str) -> int:
        """An over-estimate: the real count could ask a remote tokenizer."""
        return len(text) // 3 + 1

    def close(self) -> None:
        """Nothing to release: the inner backend belongs to its owner."""


def _call(callback: Callable[[Status], None], status: Status) -> None:
    try:
        callback(status)
    except Exception:
        log.exception("a status callback failed")


def _same_format(prompt: Prompt, old: ModelInfo, new_side: _Side) -> bool:
    """Whether a prompt rendered for `old` means the same to the new side's model."""
    new = new_side.backend.info if new_side.backend is not None else NO_MODEL
    if prompt.kind == "prefix":
        return True
    if prompt.kind == "fim":
        return old.fim is not None and old.fim == new.fim
    return False
