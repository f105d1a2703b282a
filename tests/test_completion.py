"""The completion pipeline with recorded model text: token healing, the cache, budgets."""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from pathlib import Path

import pytest

from codeflow.lsp_server.assistant.completion import Cancelled, CompletionRequest, CompletionService, continuation
from codeflow.lsp_server.assistant.layout import fit_budgets
from codeflow.lsp_server.settings import Settings, apply_layer
from codeflow.quant.backend import CancelToken
from codeflow.quant.recorded import RecordedBackend

PREFIX = 'def login():\n    data = request.get_json()\n    user = '


def service(tmp_path: Path, text: str, delay_ms: float = 0.0) -> CompletionService:
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"chat_template": "", "default": text, "delay_ms": delay_ms}))
    backend = RecordedBackend(answers)
    settings, errors = apply_layer(Settings(), {"completion": {"backgroundTokens": 64}})
    assert not errors
    return CompletionService(lambda: backend, settings)


def request(prefix: str, suffix: str = "\n") -> CompletionRequest:
    return CompletionRequest(key="file:///app.py", path="app.py", language="python", prefix=prefix, suffix=suffix)


def test_token_healing_completes_the_word_being_typed(tmp_path: Path) -> None:
    svc = service(tmp_path, ' User.find_by_email(data["email"])\n    return user\n')
    result = svc.complete(request(PREFIX + "U"), CancelToken())
    assert result.text == 'ser.find_by_email(data["email"])'
    # The prompt stopped before the fragment, so the model was not asked to continue "U".
    assert svc.last.prompt.endswith("user =")


@pytest.mark.parametrize(
    ("raw", "typed", "want"),
    [(" User", " ", (True, "User")), ("User", " ", (True, "User")), ("", " ", (None, "")),
     (" Us", " U", (True, "s")), (" No", " U", (False, "")), (" ", " U", (None, ""))],
)
def test_continuation(raw: str, typed: str, want: tuple) -> None:
    assert continuation(raw, typed) == want


def test_a_model_that_does_not_continue_the_word_shows_nothing(tmp_path: Path) -> None:
    svc = service(tmp_path, "None\n")
    assert svc.complete(request(PREFIX + "U"), CancelToken()).text == ""


def test_typing_through_the_ghost_text_is_served_from_the_cache(tmp_path: Path) -> None:
    svc = service(tmp_path, ' User.find_by_email(data["email"])\n')
    first = svc.complete(request(PREFIX), CancelToken())
    assert first.text == 'User.find_by_email(data["email"])' and not first.from_cache
    second = svc.complete(request(PREFIX + "User.fi"), CancelToken())
    assert second.from_cache and second.text == 'nd_by_email(data["email"])'
    other = svc.complete(request(PREFIX + "x"), CancelToken())
    assert not other.from_cache


def test_accepting_and_asking_for_more_continues_from_the_cache(tmp_path: Path) -> None:
    svc = service(tmp_path, ' User.find_by_email(data["email"])\n    if user is None:\n        abort(401)\n')
    first = svc.complete(request(PREFIX), CancelToken())
    svc.wait_idle()
    accepted = PREFIX + first.text + "\n    "
    more = svc.complete(request(accepted), CancelToken())
    assert more.from_cache and more.text.startswith("if user is None:")


def test_cancelled_request_stops_its_job(tmp_path: Path) -> None:
    svc = service(tmp_path, "x" * 5000, delay_ms=5)
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        svc.complete(request(PREFIX), cancel)
    assert svc.totals.generations_started == 0  # cancelled before it began: nothing ran
    cancel = CancelToken()
    threading.Timer(0.2, cancel.cancel).start()  # one line never ends: only the cancel stops it
    with pytest.raises(Cancelled):
        svc.complete(request(PREFIX), cancel)
    assert svc.wait_idle(timeout=5)
    assert svc.last.cancelled and svc.last.tokens < 100


def test_a_newer_request_supersedes_the_older_one_but_keeps_its_job(tmp_path: Path) -> None:
    svc = service(tmp_path, "x" * 5000, delay_ms=5)
    older = svc.begin("file:///app.py")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(svc.complete, request(PREFIX), older)
        while svc.last.tokens == 0:  # the older request's job is generating
            time.sleep(0.01)
        newer = svc.begin("file:///app.py")
        with pytest.raises(Cancelled):
            pending.result(timeout=5)
    assert older.cancelled and not newer.cancelled
    assert not svc.last.cancelled  # its job goes on: the newer request may continue from it
    assert svc.totals.superseded == 1 and svc.totals.requests == 2
    svc.stop_all()
    assert svc.wait_idle(timeout=5) and svc.totals.in_flight == 0 and svc.totals.in_flight_max == 1


@pytest.mark.parametrize(("n_ctx", "want"), [(4096, (1024, 1024, 256)), (512, (0, 252, 36))])
def test_budgets_fit_the_context_window(n_ctx: int, want: tuple[int, int, int]) -> None:
    assert fit_budgets(n_ctx, 192, 1024, 1024, 256) == want
    context, prefix, suffix = fit_budgets(n_ctx, 192, 1024, 1024, 256)
    assert context + prefix + suffix + 192 <= max(n_ctx, 64 + 192 + 32)
