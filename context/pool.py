"""Parsing in worker processes (issue 16 §3): tree-sitter holds the GIL for most of a parse, so
threads do not scale. Worker processes read and extract chunks of paths and send back compact
msgpack; the parent only merges. Workers are fresh interpreters (as multiprocessing's "spawn"),
not forks: the server has threads running, and a fork copies their locks in whatever state they
are in. They are started with subprocess rather than multiprocessing, whose spawn re-imports the
parent's __main__ in every worker (a script without a main guard would index in each one)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from multiprocessing.connection import Connection, wait
from pathlib import Path

import msgspec

from codeflow.context.errors import UnreadableFileError
from codeflow.context.extract import extract
from codeflow.context.languages import language_of
from codeflow.context.symbols import FileIndex
from codeflow.context.walk import read_source

log = logging.getLogger(__name__)

# Below this many files to parse, starting workers (about 0.3 s each, spawned) costs more than
# it saves: a file parses in about 3 ms.
PARALLEL_MIN = 400
# Files per request: small enough to spread the work evenly, large enough that a round trip is
# a small share of the parse time.
CHUNK = 48
# Requests in flight per worker, so that a worker never waits for the parent between chunks.
IN_FLIGHT = 2
_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1
# A worker: a fresh interpreter given its socket's fd and the parent's pid. `-c` would put the
# working directory (the server's: often the user's workspace) first on sys.path, where a file
# named `signal.py` would be imported instead; -P (3.11) drops it, and the worker runs in
# sys.prefix, which holds no modules, for older versions.
WORKER_COMMAND = (sys.executable, *(("-P",) if sys.version_info >= (3, 11) else ()), "-c",
                  "import sys; from codeflow.context.pool import serve; serve(int(sys.argv[1]), int(sys.argv[2]))")


class Parsed(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """One chunk's results: the files extracted, and (path, reason) for each one skipped."""

    files: list[FileIndex]
    skipped: list[tuple[str, str]]


class _Request(msgspec.Struct, array_like=True):
    paths: list[str]
    max_bytes: int


_encoder = msgspec.msgpack.Encoder()
_reply = msgspec.msgpack.Decoder(Parsed)
_request = msgspec.msgpack.Decoder(_Request)


def worker_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's core count)."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def parse_file(path: str, max_bytes: int) -> FileIndex | str:
    """Read and extract one file as `Workspace.index_file` does; the reason when it is unreadable."""
    try:
        data, st = read_source(Path(path), max_bytes)
    except (UnreadableFileError, OSError) as exc:
        return str(exc)
    return extract(path, language_of(path) or "", data, st.st_mtime_ns, st.st_size)


def parse_chunk(paths: list[str], max_bytes: int) -> Parsed:
    """Extract a chunk of files (a worker's unit of work)."""
    out = Parsed(files=[], skipped=[])
    for path in paths:
        got = parse_file(path, max_bytes)
        if isinstance(got, str):
            out.skipped.append((path, got))
        else:
            out.files.append(got)
    return out


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the parent dies (a killed server leaves no orphans even
    mid-chunk); elsewhere a worker ends at the EOF of its pipe, after its current chunk."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(0)


def serve(fd: int, parent: int) -> None:
    """A worker's loop on its socket: a request in, its Parsed out, until an empty request or EOF."""
    _die_with_parent(parent)
    conn = Connection(fd)
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not msg:
            return
        req = _request.decode(msg)
        conn.send_bytes(_encoder.encode(parse_chunk(req.paths, req.max_bytes)))


class PoolError(Exception):
    """The workers could not be started."""


class ParsePool:
    """Worker processes parsing chunks of paths; `leftover` holds what they did not get to."""

    def __init__(self, workers: int, max_bytes: int, cancel: threading.Event) -> None:
        self.max_bytes = max_bytes
        self.cancel = cancel
        self.leftover: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._conns: list[Connection] = []
        try:
            for _ in range(workers):
                self._start_one()
        except (OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise PoolError(f"cannot start {workers} parse workers ({sys.executable}): {exc}") from exc

    def _start_one(self) -> None:
        mine, theirs = socket.socketpair()
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            proc = subprocess.Popen(
                [*WORKER_COMMAND, str(theirs.fileno()), str(os.getpid())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, env=env, cwd=sys.prefix, close_fds=True)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._procs.append(proc)
        self._conns.append(Connection(mine.detach()))

    @property
    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [p.pid for p in self._procs]

    def run(self, paths: Iterable[str]) -> Iterator[Parsed]:
        """Each chunk's results as it arrives. `paths` may be a walk still under way: a chunk is
        pulled from it between replies, so parsing starts before the walk ends (walking 10k files
        took 1.5 s, a core idle before the workers got anything: issue 16 §3). Stops early on
        cancel; when a worker dies, the paths pulled but not parsed are left in `leftover` and the
        rest stay in `paths` for the caller to parse itself."""
        source = iter(paths)
        todo: deque[list[str]] = deque()
        sent: dict[Connection, deque[list[str]]] = {c: deque() for c in self._conns}
        walking = True
        while walking or todo or any(sent.values()):
            if self.cancel.is_set():
                return
            if walking:
                chunk = list(islice(source, CHUNK))
                walking = len(chunk) == CHUNK
                if chunk:
                    todo.append(chunk)
            try:
                for conn in self._conns:
                    self._feed(conn, todo, sent)
            except OSError:
                self._lose(todo, sent)
                return
            # While walking, only collect the replies already there, then walk on.
            for parsed in self._replies(sent, 0 if walking else _POLL_S):
                if parsed is None:
                    self._lose(todo, sent)
                    return
                yield parsed

    def _replies(self, sent: dict[Connection, deque[list[str]]], timeout: float) -> Iterator[Parsed | None]:
        """The replies that arrive within `timeout`; None once a worker is found dead. A worker
        still holds a second chunk while its reply is merged, so it is fed on the next round."""
        busy = [c for c, q in sent.items() if q]
        for conn in wait(busy, timeout=timeout) if busy else ():
            try:
                data = conn.recv_bytes()  # type: ignore[union-attr]
            except (EOFError, OSError):
                yield None
                return
            sent[conn].popleft()  # type: ignore[index]
            yield _reply.decode(data)
        if any(p.poll() is not None and sent[c] for c, p in zip(self._conns, self._procs)):
            yield None

    def _feed(self, conn: Connection, todo: deque[list[str]], sent: dict[Connection, deque[list[str]]]) -> None:
        # Near the end, one chunk each: the last chunks go to whichever worker is free first,
        # rather than waiting behind a busy one while another idles.
        limit = IN_FLIGHT if len(todo) > len(self._conns) else 1
        while todo and len(sent[conn]) < limit:
            chunk = todo.popleft()
            conn.send_bytes(_encoder.encode(_Request(chunk, self.max_bytes)))
            sent[conn].append(chunk)

    def _lose(self, todo: deque[list[str]], sent: dict[Connection, deque[list[str]]]) -> None:
        """A worker died: hand everything not yet parsed back to the caller, stop the rest."""
        lost = [p for q in sent.values() for chunk in q for p in chunk] + [p for chunk in todo for p in chunk]
        log.warning("a parse worker died; parsing the remaining %d files in this process", len(lost))
        self.leftover = lost
        todo.clear()
        for q in sent.values():
            q.clear()

    def close(self) -> None:
        """Stop the workers: ask, then kill whatever is still running."""
        for conn in self._conns:
            try:
                conn.send_bytes(b"")
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=0 if self.cancel.is_set() else 1)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for conn in self._conns:
            conn.close()
        self._procs.clear()
        self._conns.clear()

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
