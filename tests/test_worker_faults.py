"""Local faults (issue 12): a worker stopped with a real SIGSTOP, before its first token and mid-answer,
is killed and replaced and the user is told; a model with garbage weights is refused at load."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from gguf_factory import write_tiny_gguf

from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.errors import ModelLoadError, WorkerCrashError
from codeflow.quant.fallback import FallbackBackend, Status
from codeflow.quant.worker import WorkerBackend
from test_worker import ENDLESS, LOAD

pytest.importorskip("llama_cpp")



@pytest.fixture
def worker(worker_model: Path) -> Iterator[WorkerBackend]:
    backend = WorkerBackend(str(worker_model), first_token_timeout_s=2.0, stall_timeout_s=1.0, **LOAD)
    yield backend
    backend.close()


def text(backend: object, max_tokens: int = 6) -> str:
    return "".join(backend.stream(Prompt(text="def login(user):"), GenOptions(max_tokens=max_tokens), CancelToken()))  # type: ignore[attr-defined]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_stopped_worker_is_killed_before_its_first_token_and_replaced(worker: WorkerBackend) -> None:
    pid = worker.pid
    assert pid is not None and text(worker)
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(WorkerCrashError, match=r"no first token within 2.0s"):
        text(worker)
    assert time.monotonic() - started < 4.0
    assert gone(pid), "the stopped worker was left behind"
    assert text(worker), "no new worker answered the next request"
    assert worker.pid != pid


def test_a_worker_stopped_mid_answer_is_killed_by_the_stall_watchdog(worker: WorkerBackend) -> None:
    pid = worker.pid
    assert pid is not None
    pieces = worker.stream(Prompt(text="def f():"), ENDLESS, CancelToken())
    got = [next(pieces) for _ in range(3)]
    os.kill(pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(WorkerCrashError, match=r"no token for 1.0s"):
        got += list(pieces)
    assert time.monotonic() - started < 3.0
    assert gone(pid)
    assert text(worker) and worker.pid != pid


def test_a_stopped_worker_is_told_to_the_user_and_the_next_request_recovers(worker_model: Path) -> None:
    statuses: list[Status] = []
    backend = FallbackBackend(
        lambda: WorkerBackend(str(worker_model), first_token_timeout_s=2.0, stall_timeout_s=1.0, **LOAD), None,
        statuses.append)
    try:
        assert text(backend)
        pid = backend._active.backend.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        assert text(backend) == ""  # an empty answer, at once, not after 90 s
        assert time.monotonic() - started < 4.0
        assert statuses[-1].state == "error", statuses[-1]
        assert "local backend failed" in statuses[-1].message and "no first token" in statuses[-1].message
        assert text(backend), "the next request did not get a new worker"
        assert statuses[-1].state == "ready"
    finally:
        backend.close()


def test_a_model_with_garbage_weights_is_refused_at_load(tmp_path: Path) -> None:
    broken = write_tiny_gguf(tmp_path / "nan.gguf", nan_weights=True)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="produced no text"):
        WorkerBackend(str(broken), **LOAD)
    assert time.monotonic() - started < 20.0
    statuses: list[Status] = []
    backend = FallbackBackend(lambda: WorkerBackend(str(broken), **LOAD), None, statuses.append)
    try:
        assert text(backend) == ""
        assert statuses[-1].state == "error" and "nan.gguf" in statuses[-1].message
        assert "produced no text" in statuses[-1].message
    finally:
        backend.close()
