"""The fallback policy between local and remote backends, on scripted backends.

The real failures (a SIGKILLed worker, a dying HTTP server) are driven in test_worker.py and
test_remote.py; here each backend fails exactly when the test says, to pin the policy down.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codeflow.quant.backend import CancelToken, FimTokens, GenOptions, ModelInfo, Prompt
from codeflow.quant.errors import (
    BackendError,
    BackendTimeoutError,
    ModelLoadError,
    RemoteError,
    WorkerCrashError,
)
from codeflow.quant.fallback import FallbackBackend, Status

FIM_A = FimTokens(prefix="<a_pre>", suffix="<a_suf>", middle="<a_mid>")
FIM_B = FimTokens(prefix="<b_pre>", suffix="<b_suf>", middle="<b_mid>")


class Scripted:
    """A backend whose next streams fail as `plan` says: (exception or None, pieces before it)."""

    def __init__(self, name: str, plan: list, fim: FimTokens | None = None) -> None:
        self._info = ModelInfo(name=name, device=f"{name}-device", fim=fim)
        self.plan = plan
        self.closed = False
        self.streams = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        self.streams += 1
        error, before = self.plan.pop(0) if self.plan else (None, 0)
        for i in range(before if error else 3):
            if cancel.cancelled:
                return
            yield f"{self._info.name}{i} "
        if error is not None:
            raise error

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        self.closed = True


class Factory:
    """Builds Scripted backends, counting builds; `load_error` makes building fail."""

    def __init__(self, name: str, plan: list | None = None, load_error: Exception | None = None,
                 fim: FimTokens | None = None) -> None:
        self.name, self.plan, self.load_error, self.fim = name, plan or [], load_error, fim
        self.built: list[Scripted] = []

    def __call__(self) -> Scripted:
        if self.load_error is not None:
            raise self.load_error
        backend = Scripted(self.name, self.plan, self.fim)
        self.built.append(backend)
        return backend


def run(fb: FallbackBackend, kind: str = "prefix", cancel: CancelToken | None = None) -> str:
    return "".join(fb.stream(Prompt(text="x", kind=kind), GenOptions(), cancel or CancelToken()))


@pytest.fixture
def statuses() -> list[Status]:
    return []


def crash() -> WorkerCrashError:
    return WorkerCrashError("model worker (pid 1) was killed by SIGKILL")


def test_load_failure_uses_remote_from_the_start(statuses: list[Status]) -> None:
    local = Factory("local", load_error=ModelLoadError("m.gguf", "failed to allocate 19 GB"))
    remote = Factory("remote")
    fb = FallbackBackend(local, remote, statuses.append)
    assert run(fb) == "remote0 remote1 remote2 "
    assert fb.active == "remote"
    assert [(s.backend, s.state) for s in statuses[:4]] == [
        ("local", "loading"), ("local", "error"), ("remote", "loading"), ("remote", "fallback")
    ]
    assert "failed to allocate 19 GB" in statuses[3].message
    assert statuses[3].model == "remote" and statuses[3].device == "remote-device"
    # A failed load is not retried on every request.
    run(fb)
    assert len(remote.built) == 1


def test_crash_before_first_piece_is_answered_by_remote_in_the_same_request(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 0)])
    remote = Factory("remote")
    switches: list[Status] = []
    fb = FallbackBackend(local, remote, statuses.append, on_switch=switches.append)
    assert run(fb) == "remote0 remote1 remote2 "
    assert local.built[0].closed
    assert len(switches) == 1 and switches[0].state == "fallback" and "SIGKILL" in switches[0].message
    run(fb)
    run(fb)
    # Later requests stay on remote, keep the same reason, and do not announce a switch again.
    assert len(switches) == 1
    assert fb.status == switches[0]


def test_crash_after_pieces_is_raised_so_the_partial_answer_is_discarded(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 2)])
    remote = Factory("remote")
    fb = FallbackBackend(local, remote, statuses.append)
    got: list[str] = []
    with pytest.raises(WorkerCrashError):  # issue 12: an incomplete answer is never used
        got.extend(fb.stream(Prompt(text="x"), GenOptions(), CancelToken()))
    assert got == ["local0 ", "local1 "]
    assert remote.built and remote.built[0].streams == 0
    assert statuses[-1].state == "fallback"  # reported, as before, and switched
    assert run(fb) == "remote0 remote1 remote2 "


def test_remote_failure_goes_back_to_a_restarted_local(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 0)])
    remote = Factory("remote", plan=[(RemoteError("POST http://h/v1/completions: HTTP 503"), 0)])
    fb = FallbackBackend(local, remote, statuses.append)
    assert run(fb) == ""  # local crashed, then remote failed: nothing left for this request
    assert fb.active == "local"
    assert run(fb) == "local0 local1 local2 "
    assert len(local.built) == 2
    assert statuses[-1] == Status(backend="local", device="local-device", model="local",
                                  state="ready", message="local on local-device")


def test_timeouts_switch_only_when_repeated(statuses: list[Status]) -> None:
    slow = BackendTimeoutError("model worker sent no token within 5s")
    local = Factory("local", plan=[(slow, 0), (None, 0), (slow, 0), (slow, 0)])
    remote = Factory("remote")
    fb = FallbackBackend(local, remote, statuses.append, max_timeouts=2)
    assert run(fb) == ""
    assert fb.active == "local" and not remote.built
    assert statuses[-1].state == "error" and "no token within 5s" in statuses[-1].message
    assert run(fb) == "local0 local1 local2 "  # a success resets the count
    assert run(fb) == ""
    assert fb.active == "local"
    assert run(fb) == "remote0 remote1 remote2 "
    assert fb.active == "remote"


def test_without_remote_a_crash_is_an_empty_result_and_the_next_request_restarts(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 0)])
    fb = FallbackBackend(local, None, statuses.append)
    assert run(fb) == ""
    assert statuses[-1].state == "error" and statuses[-1].backend == "local"
    assert run(fb) == "local0 local1 local2 "
    assert len(local.built) == 2
    restart = statuses.index(Status(backend="local", state="loading", message="starting the local model"), 2)
    assert [s.state for s in statuses[restart:]] == ["loading", "ready", "generating", "ready"]


def test_repeated_crashes_give_up_on_local(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 0)] * 5)
    fb = FallbackBackend(local, None, statuses.append, max_crashes=3)
    for _ in range(6):
        assert run(fb) == ""
    assert len(local.built) == 3
    assert fb.active == "none"
    assert statuses[-1].backend == "none" and "crashed 3 times" in statuses[-1].message


def test_nothing_works_means_empty_results_and_no_storm(statuses: list[Status]) -> None:
    local = Factory("local", load_error=ModelLoadError("m.gguf", "out of memory"))
    remote = Factory("remote", load_error=RemoteError("model 'x' is not served by http://h"))
    fb = FallbackBackend(local, remote, statuses.append)
    for _ in range(20):
        assert run(fb) == ""
    assert fb.info.name == "none"
    assert fb.count_tokens("a b c") >= 1
    assert statuses[-1].backend == "none" and statuses[-1].state == "error"
    assert "out of memory" in statuses[-1].message and "not served" in statuses[-1].message
    assert len(statuses) <= 6


def test_fim_prompt_is_not_replayed_on_a_model_with_other_markers(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(crash(), 0)], fim=FIM_A)
    remote = Factory("remote", fim=FIM_B)
    fb = FallbackBackend(local, remote, statuses.append)
    assert run(fb, kind="fim") == ""
    assert fb.active == "remote" and fb.info.fim == FIM_B
    assert run(fb, kind="fim") == "remote0 remote1 remote2 "


def test_request_errors_do_not_switch(statuses: list[Status]) -> None:
    local = Factory("local", plan=[(BackendError("prompt has 5000 tokens, context holds 4096"), 0),
                                   (RuntimeError("llama_decode returned -1"), 0)])
    remote = Factory("remote")
    fb = FallbackBackend(local, remote, statuses.append)
    assert run(fb) == ""
    assert "context holds 4096" in statuses[-1].message
    assert run(fb) == ""
    assert "llama_decode" in statuses[-1].message
    assert fb.active == "local" and not remote.built


def test_cancelled_request_yields_nothing_and_a_broken_callback_is_survived() -> None:
    def explode(status: Status) -> None:
        raise ValueError("client gone")

    fb = FallbackBackend(Factory("local"), None, explode)
    cancel = CancelToken()
    cancel.cancel()
    assert run(fb, cancel=cancel) == ""
    assert run(fb) == "local0 local1 local2 "


def test_closing_early_closes_the_inner_stream() -> None:
    closed: list[bool] = []

    class Tracking(Scripted):
        def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
            try:
                yield from super().stream(prompt, opts, cancel)
            finally:
                closed.append(True)

    fb = FallbackBackend(lambda: Tracking("local", []), None, lambda s: None)
    pieces = fb.stream(Prompt(text="x"), GenOptions(), CancelToken())
    assert next(pieces) == "local0 "
    pieces.close()
    assert closed == [True]
    fb.close()
