"""Issue 16 §1-§2: a prompt whose start survives cursor moves, and the latency budget's arithmetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.lsp_server.assistant import budget as latency
from codeflow.lsp_server.assistant.completion import CompletionRequest, CompletionService
from codeflow.lsp_server.assistant.runtime import EngineContext
from codeflow.lsp_server.settings import Settings, apply_layer
from codeflow.quant.recorded import RecordedBackend

EXAMPLE = Path(__file__).parent.parent / "examples" / "flask_app"
HEADER = "# path: app.py\n"


def _more_routes(n: int) -> str:
    return "".join(
        f"\n\n@app.route(\"/r{i}\")\ndef route_{i}():\n    user = User.find_by_email(session[\"email\"])\n"
        f"    value = config.SECRET_KEY\n    db.session.add(user)\n    return jsonify(value=value, n={i})\n"
        for i in range(n))


@pytest.fixture()
def setup(tmp_path: Path):  # noqa: ANN201
    root = tmp_path / "app"
    shutil.copytree(EXAMPLE, root)
    text = (root / "app.py").read_text() + _more_routes(12)
    (root / "app.py").write_text(text)
    engine = ContextEngine([root], EngineConfig(use_cache=False))
    engine.index_now()
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"chat_template": "", "default": " x\n"}))
    backend = RecordedBackend(answers)
    yield engine, backend, root, text
    engine.stop()


def _service(engine: ContextEngine, backend: RecordedBackend, root: Path, stable: bool = True,
             settings: Settings | None = None) -> CompletionService:
    return CompletionService(lambda: backend, settings or Settings(), EngineContext(lambda: engine, root, stable))


def _at(text: str, needle: str, invoked: bool = True) -> CompletionRequest:
    cut = text.index(needle) + len(needle)
    return CompletionRequest(key="k", path="app.py", language="python", prefix=text[:cut], suffix=text[cut:],
                             invoked=invoked)


def _context(prompt: str) -> str:
    """The prompt's context part: everything before the current file's header."""
    return prompt[: prompt.index(HEADER)]


def test_a_jump_keeps_the_file_block_that_opens_the_prompt(setup) -> None:  # noqa: ANN001
    engine, backend, root, text = setup
    svc = _service(engine, backend, root)
    near = _at(text, '@app.route("/r2")\ndef route_2():\n    user = ')
    far = _at(text, '@app.route("/r9")\ndef route_9():\n    user = ')
    assert far.prefix.count("\n") - near.prefix.count("\n") >= 20
    block = engine.render(engine.file_context(root / "app.py", text, 512, backend.count_tokens), root / "app.py")
    assert "models.py" in block and "config.py" in block  # what the imports define
    first = svc.prompt_for(near, backend, False)[1].text
    second = svc.prompt_for(far, backend, False)[1].text
    assert first.startswith(block) and second.startswith(block)


def test_typing_a_character_keeps_the_whole_context(setup) -> None:  # noqa: ANN001
    engine, backend, root, text = setup
    svc = _service(engine, backend, root)
    req = _at(text, '@app.route("/r5")\ndef route_5():\n    user = ')
    before = _context(svc.prompt_for(req, backend, False)[1].text)
    typed = req.prefix + "U"
    engine.set_buffer(root / "app.py", typed + req.suffix)
    after = _context(svc.prompt_for(CompletionRequest(key="k", path="app.py", language="python", prefix=typed,
                                                      suffix=req.suffix, invoked=True), backend, False)[1].text)
    assert before and after == before


def test_the_old_layout_is_still_available(setup) -> None:  # noqa: ANN001
    engine, backend, root, text = setup
    req = _at(text, '@app.route("/r5")\ndef route_5():\n    user = ')
    old = _service(engine, backend, root, stable=False).prompt_for(req, backend, False)[1].text
    new = _service(engine, backend, root).prompt_for(req, backend, False)[1].text
    assert HEADER in old and old != new


def test_an_automatic_request_fits_the_latency_budget_and_an_invoked_one_does_not_shrink(setup) -> None:  # noqa: ANN001
    engine, backend, root, text = setup
    settings, errors = apply_layer(Settings(), {"completion": {"latencyBudgetMs": 500}})
    assert not errors
    svc = _service(engine, backend, root, settings=settings)
    svc.prefill.observe(1000, 2.0)  # 500 tokens/s: 250 in 500 ms, less the first line: one step
    auto = _at(text, '@app.route("/r9")\ndef route_9():\n    user = ', invoked=False)
    limit = svc.allowance(auto, backend)
    assert limit == latency.ALLOWANCE_STEP
    small = svc.prompt_for(auto, backend, False)[1].text
    assert backend.count_tokens(small) <= limit
    full = svc.prompt_for(_at(text, '@app.route("/r9")\ndef route_9():\n    user = '), backend, False)[1].text
    assert backend.count_tokens(full) > 2 * limit


def test_budget_ms_auto_by_device() -> None:
    assert latency.budget_ms(0, "cpu") == 1500
    assert latency.budget_ms(0, "gpu") == 300
    assert latency.budget_ms(800, "gpu") == 800


@pytest.mark.parametrize(("ms", "tps", "want"), [
    (1500, 1000.0, 1280),  # 1500 - 12 * 10 = 1380 -> 1280
    (300, 2000.0, 384),    # 600 - 120 = 480 -> 384
    (100, 50.0, latency.ALLOWANCE_STEP),  # never below one step
])
def test_allowance(ms: int, tps: float, want: int) -> None:
    assert latency.allowance(ms, tps) == want


def test_shares_put_the_nearest_lines_first() -> None:
    context, prefix, suffix = latency.shares(1056, 1536, 1024, 256)  # 1024 room
    assert (context, prefix, suffix) == (448, 448, 128)
    assert sum(latency.shares(1056, 1536, 1024, 256)) <= 1056 - latency.OVERHEAD_TOKENS
    # A small context budget leaves the prefix what it asks for.
    assert latency.shares(1056, 100, 1024, 256) == (100, 796, 128)
    assert latency.shares(0, 100, 100, 100) == (0, 0, 0)


def test_new_tokens_counts_past_the_common_prefix() -> None:
    assert latency.new_tokens("abc" * 1000, "abc" * 1000) == 1
    assert latency.new_tokens("a" * 5000 + "b" * 35, "a" * 5000) == 11
    assert latency.new_tokens("x" * 70, "") == 21


def test_the_prefill_meter_smooths_and_ignores_short_evaluations() -> None:
    meter = latency.PrefillMeter()
    assert meter.speed("cpu") == latency.DEFAULT_PREFILL_TPS["cpu"]
    meter.observe(10, 0.001)  # too short to say anything
    assert meter.tps is None
    meter.observe(1000, 1.0)
    meter.observe(2000, 1.0)
    assert meter.speed("cpu") == pytest.approx(0.7 * 1000 + 0.3 * 2000)
