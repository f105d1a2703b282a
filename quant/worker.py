"""The local model in a worker process, so that a llama.cpp abort or an OOM kill spares the server.

`WorkerBackend` implements `Backend` by forwarding each call to a child process
(`worker_child.py`) over msgpack frames on its stdin/stdout. A dead child is reported as
`WorkerCrashError` at once; the next request starts a new child. So is a child that stops
answering (stopped, deadlocked, swapping): no first token within `first_token_timeout_s`, or no
token for `stall_timeout_s` mid-answer, and it is killed (issue 12: a SIGSTOPped worker hung
requests for 90 s+ with no message). A model that generates nothing for a probe prompt at load
(NaN or garbage weights) is refused there, with a `ModelLoadError` that says so.
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import errors
from .backend import CancelToken, GenOptions, ModelInfo, Prompt
from .errors import BackendError, BackendTimeoutError, ModelLoadError, WorkerCrashError
from .lookup import LookupTally
from .worker_protocol import (
    Cancel,
    Channel,
    Count,
    Counted,
    Done,
    Failed,
    FromWorker,
    Generate,
    Load,
    Loaded,
    Piece,
    Shutdown,
)

log = logging.getLogger(__name__)

LOCAL_FACTORY = "codeflow.quant.local:LocalBackend"
_DEAD = object()
_POLL_S = 0.05
# The load probe: a short generation that any working model continues (issue 12: a GGUF with
# garbage tensors loaded as "ready" and gave empty completions after 20-28 s).
PROBE_PROMPTS = ("def main():\n    ", "The")
PROBE_TOKENS = 4


class _Child:
    """One worker process, the thread that reads its replies, and the requests awaiting them."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codeflow.quant.worker_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.channel = Channel(self.proc.stdout, self.proc.stdin, FromWorker)
        self.pending: dict[int, queue.Queue[Any]] = {}
        self.lock = threading.Lock()
        self.dead = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._next_id = 0
        threading.Thread(target=self._read_replies, name="worker-replies", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="worker-stderr", daemon=True).start()

    def register(self, request_id: int | None = None) -> tuple[int, queue.Queue[Any]]:
        """A fresh request id and the queue its replies arrive on."""
        with self.lock:
            if self.dead:
                raise WorkerCrashError(self.death_message())
            if request_id is None:
                self._next_id += 1
                request_id = self._next_id
            replies: queue.Queue[Any] = queue.Queue()
            self.pending[request_id] = replies
            return request_id, replies

    def unregister(self, request_id: int) -> None:
        """Forget a finished request; late replies to it are dropped."""
        with self.lock:
            self.pending.pop(request_id, None)

    def send(self, message: Any) -> None:
        """Send a message; a broken pipe means the child died."""
        try:
            self.channel.send(message)
        except (OSError, ValueError) as exc:
            raise WorkerCrashError(self.death_message()) from exc

    def _read_replies(self) -> None:
        try:
            while (message := self.channel.receive()) is not None:
                with self.lock:
                    replies = self.pending.get(message.id)
                if replies is not None:
                    replies.put(message)
        except Exception:
            log.exception("bad message from worker process %d", self.proc.pid)
        with self.lock:
            self.dead = True
            waiting = list(self.pending.values())
        for replies in waiting:
            replies.put(_DEAD)

    def _read_stderr(self) -> None:
        assert self.proc.stderr
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_tail.append(line)
                log.debug("worker %d: %s", self.proc.pid, line)

    def death_message(self) -> str:
        """Why the child is gone: its exit status or signal, and its last words on stderr."""
        try:
            code = self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            how = "stopped answering"
        elif code < 0:
            name = signal.Signals(-code).name
            how = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
        else:
            how = f"exited with status {code}"
        last = f"; last output: {self.stderr_tail[-1]}" if self.stderr_tail else ""
        return f"model worker (pid {self.proc.pid}, {self.model}) {how}{last}"

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the child to exit; kill it if it does not."""
        if self.proc.poll() is None:
            try:
                self.channel.send(Shutdown())
                self.proc.wait(timeout=timeout)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


def _raise_failure(message: Failed) -> None:
    if message.error == "ModelLoadError":
        raise ModelLoadError(message.path, message.reason)
    cls = getattr(errors, message.error, None)
    if isinstance(cls, type) and issubclass(cls, errors.QuantError):
        raise cls(message.message)
    raise BackendError(f"model worker raised {message.error}: {message.message}")


class WorkerBackend:
    """`LocalBackend` (or another factory) run in a child process; implements `Backend`."""

    def __init__(
        self,
        model_path: str,
        *,
        factory: str = LOCAL_FACTORY,
        load_timeout_s: float = 600.0,
        first_token_timeout_s: float | None = 60.0,
        stall_timeout_s: float | None = 15.0,
        probe: bool = True,
        cancel_wait_s: float = 2.0,
        **kwargs: Any,
    ) -> None:
        self.model_path = str(model_path)
        self._factory = factory
        self._kwargs = kwargs
        self._load_timeout_s = load_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._probe = probe
        self._cancel_wait_s = cancel_wait_s
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._info: ModelInfo | None = None
        self.restarts = 0
        # Prompt-lookup draft tokens over every request, as the child reported them.
        self.lookup_tally = LookupTally()
        self._start()

    @property
    def info(self) -> ModelInfo:
        """The model's description, as the worker reported it after loading."""
        assert self._info is not None
        return self._info

    @property
    def pid(self) -> int | None:
        """The worker process id, or None when none runs."""
        return self._child.proc.pid if self._child is not None else None

    def _start(self) -> None:
        child = _Child(self.model_path)
        try:
            _, replies = child.register(0)
            child.send(Load(factory=self._factory, model_path=self.model_path, kwargs=self._kwargs))
            reply = _get(replies, self._load_timeout_s)
        except BaseException:
            child.stop(timeout=0.5)
            raise
        if isinstance(reply, Loaded):
            child.unregister(0)
            if self._probe:
                self._check_output(child)
            self._child, self._info = child, reply.info
            return
        child.stop(timeout=0.5)
        if isinstance(reply, Failed):
            _raise_failure(reply)
        if reply is _DEAD:
            raise WorkerCrashError(f"while loading: {child.death_message()}")
        raise BackendTimeoutError(
            f"model worker did not load {self.model_path} within {self._load_timeout_s}s"
        )

    def _check_output(self, child: _Child) -> None:
        """Refuse a model that generates no text for any probe prompt (stops the child)."""
        opts = GenOptions(max_tokens=PROBE_TOKENS, temperature=0.0)
        try:
            for text in PROBE_PROMPTS:
                if "".join(self._generate(child, Prompt(text=text), opts, CancelToken())):
                    return
        except BaseException:
            child.stop(timeout=0.5)
            raise
        child.stop(timeout=0.5)
        raise ModelLoadError(self.model_path, f"it loads, but produced no text for {len(PROBE_PROMPTS)} probe "
                                              "prompts: its weights are likely corrupt (NaN or garbage); "
                                              "download or convert it again")

    def restart(self) -> None:
        """Stop the worker process, if any, and start a new one."""
        with self._lock:
            if self._child is not None:
                self._child.stop(timeout=1.0)
                self._child = None
            self._start()
            self.restarts += 1

    def _running(self) -> _Child:
        """The live child; a dead one is replaced first."""
        with self._lock:
            child = self._child
        if child is None or child.dead or child.proc.poll() is not None:
            log.info("model worker for %s is not running; starting a new one", self.model_path)
            self.restart()
            with self._lock:
                child = self._child
        assert child is not None
        return child

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Yield pieces from the worker; cancel reaches it within one token step."""
        if cancel.cancelled:
            return
        yield from self._generate(self._running(), prompt, opts, cancel)

    def _generate(self, child: _Child, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        request_id, replies = child.register()
        finished = False
        try:
            child.send(Generate(id=request_id, prompt=prompt, opts=opts))
            for piece in self._pieces(child, request_id, replies, cancel):
                yield piece
            finished = True
        finally:
            if not finished and not child.dead:
                try:
                    child.send(Cancel(id=request_id))
                except WorkerCrashError:
                    pass
            child.unregister(request_id)

    def _pieces(
        self, child: _Child, request_id: int, replies: queue.Queue[Any], cancel: CancelToken
    ) -> Iterator[str]:
        last = time.monotonic()
        pieces = 0
        cancel_deadline: float | None = None
        while True:
            if cancel.cancelled and cancel_deadline is None:
                child.send(Cancel(id=request_id))
                cancel_deadline = time.monotonic() + self._cancel_wait_s
            try:
                reply = replies.get(timeout=_POLL_S)
            except queue.Empty:
                if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                    return
                if cancel_deadline is None:
                    self._watch(child, time.monotonic() - last, pieces)
                if child.dead:
                    raise WorkerCrashError(child.death_message()) from None
                continue
            last = time.monotonic()
            if reply is _DEAD:
                raise WorkerCrashError(child.death_message())
            if isinstance(reply, Piece):
                pieces += 1
                if cancel_deadline is None:
                    yield reply.text
            elif isinstance(reply, Done):
                cancel.tokens_after_cancel += reply.tokens_after_cancel
                self.lookup_tally.drafted += reply.drafted
                self.lookup_tally.accepted += reply.accepted
                return
            elif isinstance(reply, Failed):
                _raise_failure(reply)

    def _watch(self, child: _Child, quiet_s: float, pieces: int) -> None:
        """The watchdogs: a worker quiet for too long is killed, and that is a crash."""
        limit = self._stall_timeout_s if pieces else self._first_token_timeout_s
        if limit is None or quiet_s <= limit:
            return
        what = f"sent no token for {limit}s mid-answer" if pieces else f"sent no first token within {limit}s"
        raise self._kill(child, what)

    def _kill(self, child: _Child, what: str) -> WorkerCrashError:
        """Kill a worker that stopped answering (SIGKILL ends a SIGSTOPped one too); the next
        request starts a new one."""
        pid = child.proc.pid
        log.warning("model worker (pid %d) %s; killing it", pid, what)
        child.proc.kill()
        child.proc.wait()
        return WorkerCrashError(f"model worker (pid {pid}, {self.model_path}) {what}; it was stopped and a new"
                                " one starts on the next request")

    def count_tokens(self, text: str) -> int:
        """Exact token count from the worker's tokenizer."""
        child = self._running()
        request_id, replies = child.register()
        # Counting takes milliseconds beside a generation; a worker that does not answer is stuck.
        limit = self._stall_timeout_s or 60.0
        try:
            child.send(Count(id=request_id, text=text))
            reply = _get(replies, limit)
        finally:
            child.unregister(request_id)
        if isinstance(reply, Counted):
            return reply.n
        if isinstance(reply, Failed):
            _raise_failure(reply)
        if reply is _DEAD:
            raise WorkerCrashError(child.death_message())
        raise self._kill(child, f"did not count tokens within {limit}s")

    def close(self) -> None:
        """Stop the worker process."""
        with self._lock:
            if self._child is not None:
                self._child.stop()
                self._child = None


def _get(replies: queue.Queue[Any], timeout: float) -> Any:
    """The next reply, or None after `timeout` seconds."""
    try:
        return replies.get(timeout=timeout)
    except queue.Empty:
        return None
