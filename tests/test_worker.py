"""The local model in a worker process: faithful streaming, cancel, a SIGKILL mid-generation, restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_server import FaultServer

from codeflow.lsp_server.settings import RemoteSettings
from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.errors import ModelLoadError, ModelNotFoundError, WorkerCrashError
from codeflow.quant.fallback import FallbackBackend, Status
from codeflow.quant.remote import RemoteBackend
from codeflow.quant.worker import WorkerBackend

pytest.importorskip("llama_cpp")

LOAD = {"n_ctx": 512, "n_gpu_layers": 0, "n_threads": 1}
ENDLESS = GenOptions(max_tokens=400)


@pytest.fixture(scope="module")
def worker(worker_model: Path) -> Iterator[WorkerBackend]:
    backend = WorkerBackend(str(worker_model), **LOAD)
    yield backend
    backend.close()


def text(backend: object, max_tokens: int = 12, key: str = "") -> str:
    opts = GenOptions(max_tokens=max_tokens)
    return "".join(backend.stream(Prompt(text="def login(user):", key=key), opts, CancelToken()))  # type: ignore[attr-defined]


def test_worker_streams_what_the_model_generates_in_process(worker_model: Path, worker: WorkerBackend) -> None:
    from codeflow.quant.local import LocalBackend

    local = LocalBackend(str(worker_model), **LOAD)
    try:
        expected = text(local)
        assert expected
        assert text(worker) == expected
        assert worker.count_tokens("def login(user):") == local.count_tokens("def login(user):")
        assert worker.info == local.info
    finally:
        local.close()
    assert worker.pid != os.getpid()


def test_cancel_stops_generation_within_a_token(worker: WorkerBackend) -> None:
    cancel = CancelToken()
    pieces = []
    started = time.monotonic()
    for piece in worker.stream(Prompt(text="def f():"), ENDLESS, cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.cancel()
    assert len(pieces) == 3
    assert cancel.tokens_after_cancel <= 1
    assert time.monotonic() - started < 10
    # The worker is idle again: the next request is answered in full.
    assert len(text(worker, max_tokens=4)) > 0


def test_sigkill_mid_generation_is_a_prompt_error_and_the_next_request_restarts(worker: WorkerBackend) -> None:
    pieces = worker.stream(Prompt(text="def f():"), ENDLESS, CancelToken())
    next(pieces)
    old_pid = worker.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(WorkerCrashError, match="killed by SIGKILL"):
        for _ in pieces:
            pass
    assert time.monotonic() - killed < 3.0
    assert text(worker, max_tokens=4)
    assert worker.pid != old_pid and worker.restarts >= 1


def test_bad_model_files_fail_to_load(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="junk.gguf"):
        WorkerBackend(str(junk), **LOAD)
    with pytest.raises(ModelNotFoundError, match="missing.gguf"):
        WorkerBackend(str(tmp_path / "missing.gguf"), **LOAD)


def test_killed_worker_falls_back_to_remote_then_local_comes_back(worker_model: Path) -> None:
    fault = FaultServer()
    statuses: list[Status] = []
    switches: list[Status] = []
    local = FallbackBackend(
        lambda: WorkerBackend(str(worker_model), **LOAD),
        lambda: RemoteBackend(RemoteSettings(url=fault.url, model="tiny-model", retries=0)),
        statuses.append,
        on_switch=switches.append,
    )
    try:
        assert local.info.device == "cpu" and local.active == "local"
        cancel = CancelToken()
        pieces = local.stream(Prompt(text="def f():"), ENDLESS, cancel)
        next(pieces)
        pid = local._active.backend.pid  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashError):  # raised after pieces: the partial answer is discarded (issue 12)
            list(pieces)
        assert local.active == "remote" and switches[-1].state == "fallback"
        assert "SIGKILL" in switches[-1].message
        assert text(local, max_tokens=3) == "w0 w1 w2 "
        fault.mode = "error500"  # the remote goes down: a fresh local worker answers the same request
        back = text(local, max_tokens=3)
        assert back and not back.startswith("w0")
        assert local.active == "local"
        assert statuses[-1].backend == "local" and statuses[-1].state == "ready"
    finally:
        local.close()
        fault.close()
