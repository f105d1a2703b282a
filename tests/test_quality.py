"""Completions worth showing (issue 14): a runaway stops the model, automatic blocks are bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeflow.lsp_server.assistant.completion import CompletionRequest
from codeflow.quant.backend import CancelToken
from test_completion import service

LOGIN = 'def login():\n    data = request.get_json()\n    user = User.find_by_email(data["email"])\n'
ROUND = '    if user:\n        return jsonify(error="missing"), {code}\n    user = User.find_by_email(data["name"])\n'
RUNAWAY = "\n" + "".join(ROUND.format(code=404 + i) for i in range(40))


def block(prefix: str, invoked: bool) -> CompletionRequest:
    return CompletionRequest(key="file:///app.py", path="app.py", language="python", prefix=prefix,
                             suffix="", invoked=invoked)


def test_a_repeating_block_stops_the_model_not_only_the_display(tmp_path: Path) -> None:
    svc = service(tmp_path, RUNAWAY)
    shown = svc.complete(block(LOGIN + "    ", invoked=True), CancelToken())
    assert shown.text.count("if user:") == 1 and "405" not in shown.text
    assert svc.wait_idle(timeout=10)
    assert svc.last.runaway and not svc.last.cancelled
    # Stopped at the start of the second round, long before the 40 rounds the model had in it.
    assert svc.last.tokens < len(RUNAWAY) // 4


def test_an_automatic_block_shows_at_most_eight_lines_an_invoked_one_more(tmp_path: Path) -> None:
    body = "".join(f"    step_{i}(x, {chr(97 + i)!r})\n" for i in range(14))
    svc = service(tmp_path, body)
    automatic = svc.complete(block("def run(x):\n", invoked=False), CancelToken())
    assert automatic.multiline and automatic.text.count("\n") == 7
    svc.wait_idle(timeout=10)
    (tmp_path / "invoked").mkdir()
    invoked = service(tmp_path / "invoked", body)
    shown = invoked.complete(block("def run(x):\n", invoked=True), CancelToken())
    assert shown.text.count("\n") > 7


def test_a_degenerate_explanation_is_stopped_and_told(tmp_path: Path) -> None:
    import json

    from codeflow.lsp_server.assistant import explain
    from codeflow.quant.errors import DegenerateAnswerError
    from codeflow.quant.recorded import RecordedBackend

    looping = "It uses the " + "Flask-" * 3 + "Python-" * 200
    (tmp_path / "a.json").write_text(json.dumps({"default": looping}))
    backend = RecordedBackend(tmp_path / "a.json")
    errors: list[Exception] = []
    explainer = explain.Explainer(lambda: backend, lambda: "m", errors.append)
    facts = explain.Facts(name="login", kind="function", signature="def login()", docstring="", language="python",
                          path="app.py", line=0, text="def login():\n    return 1\n")
    job = explainer.start(facts, max_tokens=400)
    assert job.wait_done(10)
    assert isinstance(job.error, DegenerateAnswerError) and "Python" in str(job.error)
    assert "a larger chat model would help" in str(job.error)
    assert errors == [job.error] and explainer.cached(facts) is None
    assert explainer.last.tokens < 60  # stopped at the fourth repeat, not at the token limit


def test_an_explanation_that_ran_out_ends_at_a_sentence(tmp_path: Path) -> None:
    import json

    from codeflow.lsp_server.assistant import explain
    from codeflow.quant.recorded import RecordedBackend

    (tmp_path / "a.json").write_text(json.dumps({"default": "It logs the user in. Then it returns the sess"}))
    explainer = explain.Explainer(lambda: RecordedBackend(tmp_path / "a.json"), lambda: "m", lambda e: None)
    facts = explain.Facts(name="login", kind="function", signature="def login()", docstring="", language="python",
                          path="app.py", line=0, text="def login():\n    return 1\n")
    job = explainer.start(facts, max_tokens=8)
    assert job.wait_done(10) and job.error is None
    assert job.text == "It logs the user in."


def test_an_answer_that_rewrites_code_outside_its_target_is_refused() -> None:
    import pytest

    from codeflow.context.edits import plan_replacement
    from codeflow.context.errors import EditRejectedError

    text = ("class Store:\n    def total(self, items):\n        return sum(items)\n\n"
            "    def name(self):\n        return 'store'\n")
    sprawling = ("```python\ndef total(self, items):\n    return sum(x for x in items)\n\n"
                 "def name(self):\n    return 'shop'\n```")
    with pytest.raises(EditRejectedError, match="also rewrites `name`"):
        plan_replacement(text, 1, 2, sprawling, "python")
    focused = "```python\ndef total(self, items):\n    return sum(x for x in items)\n```"
    assert "sum(x for x in items)" in plan_replacement(text, 1, 2, focused, "python").result
    # Extracting a function adds a new name: that is the point, not a rewrite outside the target.
    extracted = ("```python\ndef total(self, items):\n    return add_up(items)\n\n"
                 "def add_up(items):\n    return sum(items)\n```")
    assert "def add_up" in plan_replacement(text, 1, 2, extracted, "python").result


def test_the_lead_constraint_allows_only_tokens_that_agree_with_the_typed_word() -> None:
    import numpy as np

    from codeflow.quant.constrain import LeadConstraint, TokenTable

    pieces = [b"", b"a", b"au", b"auth", b"authenticate", b"find", b"f", b"x", b"authority", b"th", b"t"]
    table = TokenTable(pieces)
    assert sorted(table.agreeing(b"auth")) == [1, 2, 3, 4, 8]
    assert sorted(table.agreeing(b"th")) == [9, 10]
    prompt_len = 3
    constraint = LeadConstraint(table, "auth", lambda ids: b"".join(pieces[i] for i in ids[prompt_len:]))
    scores = np.arange(len(pieces), dtype=np.float32)
    first = constraint(np.array([7, 7, 7]), scores.copy())
    assert np.isfinite(first).nonzero()[0].tolist() == [1, 2, 3, 4, 8]  # `find`, the favourite, is out
    after_au = constraint(np.array([7, 7, 7, 2]), scores.copy())
    assert np.isfinite(after_au).nonzero()[0].tolist() == [9, 10]  # "th" or "t" continue "au"...
    covered = constraint(np.array([7, 7, 7, 3]), scores.copy())
    assert np.isfinite(covered).all()  # ...and once the word is typed out, the model is free


def test_a_half_typed_name_is_completed_even_when_the_model_preferred_another(tmp_path: Path) -> None:
    """`User.auth` with the default model: its first choice after `User.` is `find_by_email`, which
    does not extend `auth`; constrained, it writes `authenticate(...)` (issue 14's golden case)."""
    import shutil

    from codeflow.context.engine import ContextEngine, EngineConfig
    from codeflow.lsp_server.assistant.completion import CompletionService
    from codeflow.lsp_server.assistant.runtime import EngineContext
    from codeflow.lsp_server.settings import Settings
    from codeflow.quant.backend import GenOptions, Prompt
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import resolve_model

    root = tmp_path / "app"
    shutil.copytree(Path(__file__).parent.parent / "examples" / "flask_app", root)
    models = (root / "models.py").read_text().replace("    def to_dict(self) -> dict:", (
        "    @classmethod\n    def authenticate(cls, email: str, password: str) -> \"User | None\":\n"
        "        \"\"\"The user with this email and password, or None.\"\"\"\n"
        "        user = cls.find_by_email(email)\n"
        "        return user if user is not None and user.check_password(password) else None\n\n"
        "    def to_dict(self) -> dict:"))
    (root / "models.py").write_text(models)
    app = (root / "app.py").read_text().replace("    user = \n", "    user = User.auth\n")
    (root / "app.py").write_text(app)
    engine = ContextEngine([root], EngineConfig(use_cache=False))
    engine.index_now()
    backend = LocalBackend(resolve_model(""), n_ctx=4096)
    try:
        svc = CompletionService(lambda: backend, Settings(), EngineContext(lambda: engine, root))
        cut = app.index("User.auth") + len("User.auth")
        req = CompletionRequest(key="k", path="app.py", language="python", prefix=app[:cut], suffix=app[cut:])
        base, built, _ = svc.prompt_for(req, backend, False)
        assert app[len(base):cut] == "auth"  # token healing held the word back
        free = "".join(backend.stream(Prompt(text=built.text, key="k"), GenOptions(max_tokens=8, stop=built.stop),
                                      CancelToken()))
        assert not free.startswith("auth")  # what made the user see nothing
        shown = svc.complete(req, CancelToken())
        assert shown.text.startswith("enticate("), shown
    finally:
        svc.stop_all()  # the job may still evaluate the whole prompt (issue 16 §2)
        assert svc.wait_idle(30)
        backend.close()
        engine.stop()


def test_the_background_stops_one_line_after_a_one_line_answer(tmp_path: Path) -> None:
    lines = "".join(f"    value_{i} = compute({i})\n" for i in range(30))
    svc = service(tmp_path, ' User.find_by_email(data["email"])\n' + lines)
    prefix = 'def login():\n    data = request.get_json()\n    user = '
    shown = svc.complete(CompletionRequest(key="k", path="app.py", language="python", prefix=prefix,
                                           suffix="\n"), CancelToken())
    assert shown.text == 'User.find_by_email(data["email"])'
    assert svc.wait_idle(timeout=10)
    # The shown line and the next one are cached (accept, then Enter); nothing past them is made.
    assert 0 < svc.last.tokens < len(lines) // 8 and not svc.last.cancelled


def _bench_quality(monkeypatch) -> object:  # noqa: ANN001
    monkeypatch.syspath_prepend(str(Path(__file__).parent.parent / "bench"))
    import quality

    return quality


CASE = {"path": "app.py", "language": "python", "prefix": "def f(a, b):\n    total = compute(",
        "suffix": "\n    return total\n", "want": "a, b)"}


def test_the_bench_judges_a_logical_line_as_one_line_and_errors_as_nodes(monkeypatch) -> None:  # noqa: ANN001
    quality = _bench_quality(monkeypatch)
    spread = quality.judge(CASE, "a,\n                        b)", multiline=False, cap=8)
    assert spread["valid"] and not spread["runaway"] and not spread["exact"]
    two = quality.judge(CASE, "a, b)\n    print(total)", multiline=False, cap=8)
    assert two["runaway"]
    # Left open for the file's next lines to close: one logical line still, but not valid here.
    left_open = quality.judge(CASE, "a,\n                        b", multiline=False, cap=8)
    assert not left_open["runaway"] and not left_open["valid"]
    open_call = quality.judge(CASE, "a, b", multiline=False, cap=8)
    assert open_call["shown"] and not open_call["valid"]


def test_the_bench_replays_a_dump_without_the_model(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    quality = _bench_quality(monkeypatch)
    rows = [{**CASE, "position": {"line": 1, "character": 20}, "free": "a, b) +\n", "led": "a, b) +\n",
             "multiline": False}]
    dump = tmp_path / "raw.json"
    quality.save_dump(dump, rows)
    kept: list = []
    summary = quality.score(quality.load_dump(dump), lambda raw, *a, **k: raw.strip(), 8, keep=kept)
    assert summary["all.before"]["syntax_valid"] == 0.0  # `a, b) +` as the model wrote it
    assert summary["all.after"]["syntax_valid"] == 1.0 and summary["all.after"]["exact_match"] == 1.0
    assert kept[0]["after"]["text"] == "a, b)" and kept[0]["position"] == {"line": 1, "character": 20}
    dump.write_text('{"version": 0, "cases": []}')
    with pytest.raises(SystemExit, match="dump version 0"):
        quality.load_dump(dump)


REGISTRY = '''def get_class(classname, all=False):
    classes = _registry[classname]
    if len(classes) > 1:
        if all:
            return classes
        raise RegistryError(
            f"Multiple classes with name {classname!r} "
            "were found."
        )
    else:
        return classes[0]
'''
DEFINE = '''var defineProperty = (function() {
  try {
    var func = getNative(Object, 'defineProperty');
    return func;
  } catch (e) {}
}());
'''


@pytest.mark.parametrize(
    ("source", "line", "want_first", "want_last", "suffix_first"),
    [
        # The closing `)` of a call is the statement's, not the next one's: blanked with it.
        (REGISTRY, 5, "raise RegistryError(", "        )", "    else:"),
        # `if` with its `else` is one statement; blanked from its `else`, it starts at the `if`.
        (REGISTRY, 9, "if len(classes) > 1:", "        return classes[0]", ""),
        # `} catch (e) {}` goes on with `try {`; `}());` closes the function the block is in.
        (DEFINE, 4, "try {", "  } catch (e) {}", "}());"),
    ],
)
def test_the_bench_blanks_whole_statements(monkeypatch, source: str, line: int, want_first: str,  # noqa: ANN001
                                           want_last: str, suffix_first: str) -> None:
    quality = _bench_quality(monkeypatch)
    lines = source.split("\n")
    start = quality._statement_start(lines, line)
    end = quality._block_end(lines, start)
    assert lines[start].strip() == want_first and [ln for ln in lines[:end] if ln][-1] == want_last
    assert (lines[end:] or [""])[0] == suffix_first
