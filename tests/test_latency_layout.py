"""Issue 16 §1-§2: a prompt whose start survives cursor moves, and the latency budget's arithmetic."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import msgspec
import pytest

from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.lsp_server.assistant import budget as latency
from codeflow.lsp_server.assistant.completion import CompletionRequest, CompletionService
from codeflow.lsp_server.assistant.layout import window_start
from codeflow.lsp_server.assistant.runtime import EngineContext
from codeflow.lsp_server.settings import Settings, apply_layer
from codeflow.quant.backend import CancelToken
from codeflow.quant.local import LocalBackend, _common_prefix
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
    return CompletionService(lambda: backend, settings or Settings(), EngineContext(lambda: engine, root, stable),
                             stable)


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


def test_a_small_file_block_keeps_an_imported_class_by_its_method_signatures(setup) -> None:  # noqa: ANN001
    engine, _, root, text = setup
    path = root / "app.py"
    roomy = engine.render(engine.file_context(path, text, 1024), path)
    small = engine.render(engine.file_context(path, text, 100), path)
    assert "class User" in roomy and "email = db.Column" in roomy  # the skeleton, attributes too
    # A prompt cut to the latency budget still tells the model what User offers.
    assert "class User" in small and "def find_by_email" in small and "email = db.Column" not in small


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


# Small windows on a long file, and no latency limit: only the window's placement differs.
SMALL = {"completion": {"latencyBudgetMs": 600_000}, "context": {"prefixTokens": 256, "budgetTokens": 256}}


@pytest.fixture()
def long_file(setup):  # noqa: ANN001, ANN201
    engine, backend, root, _ = setup
    text = (root / "app.py").read_text() + _more_routes(40).replace("/r", "/s").replace("route_", "page_")
    (root / "app.py").write_text(text)
    engine.set_buffer(root / "app.py", text)
    settings, errors = apply_layer(Settings(), SMALL)
    assert not errors
    return engine, backend, root, text, settings


def _line_of(req: CompletionRequest) -> int:
    return req.prefix.count("\n")


def _shared_through(first: CompletionRequest, first_prompt: str, second_prompt: str) -> bool:
    """Whether two prompts share everything up to the line before the first request's cursor."""
    before = first.prefix.rsplit("\n", 1)[0][-80:]
    common = len(os.path.commonprefix([first_prompt, second_prompt]))
    return first_prompt.index(before) + len(before) <= common


def test_a_jump_down_within_the_window_reuses_the_whole_prompt_before_it(long_file) -> None:  # noqa: ANN001
    engine, backend, root, text, settings = long_file
    svc = _service(engine, backend, root, settings=settings)
    here = _at(text, '@app.route("/s20")\ndef page_20():\n    user = ', invoked=False)
    there = _at(text, '@app.route("/s23")\ndef page_23():\n    user = ', invoked=False)
    assert _line_of(there) - _line_of(here) >= 20
    first = svc.prompt_for(here, backend, False)[1].text
    second = svc.prompt_for(there, backend, False)[1].text
    assert _shared_through(here, first, second)
    # Placed afresh, the window would start elsewhere and share only the file's context block.
    fresh = _service(engine, backend, root, settings=settings).prompt_for(there, backend, False)[1].text
    assert fresh != second and not _shared_through(here, first, fresh)


def test_a_jump_up_within_the_window_keeps_its_start(long_file) -> None:  # noqa: ANN001
    engine, backend, root, text, settings = long_file
    svc = _service(engine, backend, root, settings=settings)
    cursors = [_at(text, f'@app.route("/s{i}")\ndef page_{i}():\n    user = ', invoked=False) for i in range(20, 36)]
    starts = [window_start(c.prefix, 256) for c in cursors]
    # A jump up that stays below the first window's start, where a fresh window would start higher.
    low, high = next((lo, hi) for lo in range(len(cursors)) for hi in range(lo)
                     if starts[hi] < starts[lo] <= _line_of(cursors[hi]))
    first = svc.prompt_for(cursors[low], backend, False)[1].text
    second = svc.prompt_for(cursors[high], backend, False)[1].text
    assert _shared_through(cursors[high], second, first)  # the second prompt is the first one, cut shorter
    fresh = _service(engine, backend, root, settings=settings).prompt_for(cursors[high], backend, False)[1].text
    assert fresh != second


def test_a_manual_request_and_a_far_jump_place_the_window_afresh(long_file) -> None:  # noqa: ANN001
    engine, backend, root, text, settings = long_file
    svc = _service(engine, backend, root, settings=settings)

    def fresh(req: CompletionRequest) -> str:
        return _service(engine, backend, root, settings=settings).prompt_for(req, backend, False)[1].text

    svc.prompt_for(_at(text, '@app.route("/s20")\ndef page_20():\n    user = ', invoked=False), backend, False)
    manual = _at(text, '@app.route("/s23")\ndef page_23():\n    user = ')
    assert svc.prompt_for(manual, backend, False)[1].text == fresh(manual)
    far = _at(text, '@app.route("/s38")\ndef page_38():\n    user = ', invoked=False)
    assert svc.prompt_for(far, backend, False)[1].text == fresh(far)


def test_the_old_layout_places_every_window_afresh(long_file) -> None:  # noqa: ANN001
    engine, backend, root, text, settings = long_file
    old = _service(engine, backend, root, stable=False, settings=settings)
    old.prompt_for(_at(text, '@app.route("/s20")\ndef page_20():\n    user = ', invoked=False), backend, False)
    there = _at(text, '@app.route("/s23")\ndef page_23():\n    user = ', invoked=False)
    again = _service(engine, backend, root, stable=False, settings=settings).prompt_for(there, backend, False)
    assert old.prompt_for(there, backend, False)[1].text == again[1].text


def test_a_prompt_cut_to_the_budget_is_evaluated_whole_afterwards(setup, models_dir: Path) -> None:  # noqa: ANN001
    engine, _, root, text = setup
    backend = LocalBackend(models_dir / "base.gguf", n_ctx=2048)
    try:
        # Small budgets: the tiny model's tokenizer spends a token on most characters.
        settings, errors = apply_layer(Settings(), {
            "completion": {"latencyBudgetMs": 500, "maxTokens": 4, "backgroundTokens": 0},
            "context": {"budgetTokens": 256, "prefixTokens": 384, "suffixTokens": 32}})
        assert not errors
        svc = _service(engine, backend, root, settings=settings)
        svc.prefill.observe(1000, 2.0)  # 500 tokens/s: one step of 128 tokens within 500 ms
        req = _at(text, '@app.route("/r9")\ndef route_9():\n    user = ', invoked=False)
        svc.complete(req, CancelToken())
        assert svc.wait_idle(60)
        assert svc.last.warmed and svc.last.allowance == latency.ALLOWANCE_STEP
        # The next request at this place can afford the whole prompt: its tokens are in the KV cache.
        full = svc.prompt_for(req, backend, False)[1].text
        tokens = backend.tokenize(full)
        assert len(tokens) > 3 * latency.ALLOWANCE_STEP and len(tokens) < 2048 - 8
        cached = list(backend.llama.input_ids[: backend.llama.n_tokens])
        assert _common_prefix(cached, tokens) >= len(tokens) - 1
        # Asked for (Ctrl+Space) at the same place: a new answer from the whole prompt, not the cut one's.
        asked = msgspec.structs.replace(req, invoked=True)
        assert not svc.complete(asked, CancelToken()).from_cache
        assert svc.last.prompt == full and svc.last.allowance == 0
    finally:
        backend.close()


def test_calibration_measures_the_prompt_speed(setup, models_dir: Path) -> None:  # noqa: ANN001
    engine, _, root, _ = setup
    backend = LocalBackend(models_dir / "base.gguf", n_ctx=2048)
    try:
        svc = _service(engine, backend, root)
        assert svc.prefill.samples == 0
        svc.calibrate()
        assert svc.prefill.samples == 1 and svc.prefill.tps is not None and svc.prefill.tps > 0
    finally:
        backend.close()


def test_budget_ms_auto_by_device() -> None:
    assert latency.budget_ms(0, "cpu") == 1500
    assert latency.budget_ms(0, "gpu") == 300
    assert latency.budget_ms(800, "gpu") == 800


@pytest.mark.parametrize(("ms", "tps", "want"), [
    (1500, 1000.0, 1216),  # 1500 - 24 * 10 = 1260 -> 1216
    (300, 2000.0, 320),    # 600 - 240 = 360 -> 320
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
