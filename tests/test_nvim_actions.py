"""The Neovim plugin reviews AI edits (issue 11): it shows the diff, asks, and one `u` undoes it.

Headless Neovim 0.11 against the real `codeflow serve`; the chat model is a recorded one so the
edit is known. `vim.ui.select` is replaced by a stub that records the question and answers it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gguf_factory import write_tiny_gguf
from test_actions import LOOP_ANSWER
from test_nvim import NVIM, PLUGIN, SERVER, state, wait_for

pynvim = pytest.importorskip("pynvim")

DATA = Path(__file__).parent / "data" / "actions"
BODY = ("        result = []\n        for item in items:\n            result.append(double(item))\n"
        "        return result\n")
SIMPLE = "        return [double(item) for item in items]\n"
# Two separate edits (the `def` line and the `for` line), so one undo must revert both.
RENAMED = ("def total(self, values):\n    result = []\n    for item in values:\n"
           "        result.append(double(item))\n    return result\n```")

pytestmark = [
    pytest.mark.skipif(not NVIM.exists(), reason=f"no nvim at {NVIM}"),
    pytest.mark.skipif(not SERVER.exists(), reason=f"no codeflow at {SERVER}"),
]

SETUP = """
local model, chat, server = ...
_G.notes, _G.asked, _G.answer = {}, {}, 'Apply'
vim.notify = function(msg, level) table.insert(_G.notes, { msg = msg, level = level or 2 }) end
vim.ui.select = function(items, opts, on_choice)
  local review = require('codeflow.review')
  table.insert(_G.asked, { prompt = opts.prompt, items = items, diff = review.last and review.last.diff })
  on_choice(_G.answer)
end
require('codeflow').setup({
  cmd = { server, 'serve', '--log-level', 'debug' },
  settings = { model = { path = model, chatPath = chat, nGpuLayers = 0 }, context = { cache = false } },
})
"""

RUN = """
vim.api.nvim_win_set_cursor(0, { 6, 4 })
local title = ...
vim.lsp.buf.code_action({ apply = true, filter = function(a) return a.title == title end })
"""


@pytest.fixture
def nvim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in ("store.py", "helpers.py"):
        (ws / name).write_text((DATA / name).read_text())
    answers = {"name": "recorded-chat", "answers": [{"match": "Simplify and modernise", "text": LOOP_ANSWER},
                                                    {"match": "Rename unclear", "text": RENAMED}]}
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    model = write_tiny_gguf(tmp_path / "tiny-fim.gguf", fim=True)
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "home"))
    argv = [str(NVIM), "--embed", "--headless", "--clean", "-n", "-i", "NONE", "--cmd", f"set rtp^={PLUGIN}"]
    session = pynvim.attach("child", argv=argv)
    try:
        session.command(f"cd {ws}")
        session.exec_lua(SETUP, str(model), f"recorded:{tmp_path / 'answers.json'}", str(SERVER))
        session.command("edit store.py")
        wait_for("the server to be ready", lambda: state(session) in ("ready", "error"))
        assert state(session) == "ready", session.exec_lua("return require('codeflow.status').describe()")
        yield session
    finally:
        session.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop() end")
        session.close()


def text(nvim: Any) -> str:
    return "\n".join(nvim.current.buffer[:]) + "\n"


def test_an_ai_edit_shows_its_diff_asks_and_one_undo_reverts_it(nvim: Any) -> None:
    original = text(nvim)
    nvim.exec_lua(RUN, "Simplify (AI)")
    wait_for("the question", lambda: nvim.exec_lua("return #_G.asked") > 0)
    (asked,) = nvim.exec_lua("return _G.asked")
    assert asked["prompt"] == "Codeflow: Simplify: apply this edit?" and asked["items"] == ["Apply", "Cancel"]
    assert "-        result = []" in asked["diff"] and "+" + SIMPLE.rstrip("\n") in asked["diff"]
    wait_for("the applied edit", lambda: text(nvim) != original)
    assert text(nvim) == original.replace(BODY, SIMPLE)
    nvim.command("normal! u")
    assert text(nvim) == original


def test_one_undo_reverts_an_ai_edit_made_of_several_changes(nvim: Any) -> None:
    original = text(nvim)
    nvim.exec_lua(RUN, "Suggest clearer names (AI)")
    wait_for("the applied edit", lambda: text(nvim) != original)
    (asked,) = nvim.exec_lua("return _G.asked")
    assert asked["prompt"].startswith("Codeflow: Suggest clearer names:")
    assert sum(line.startswith("+ ") for line in asked["diff"]) == 2  # two changed lines, apart
    assert text(nvim) == original.replace("items):", "values):").replace("in items:", "in values:")
    nvim.command("normal! u")
    assert text(nvim) == original
    assert nvim.exec_lua("return vim.tbl_filter(function(n) return n.level >= 4 end, _G.notes)") == []


def test_a_declined_ai_edit_leaves_the_buffer_alone(nvim: Any) -> None:
    original = text(nvim)
    nvim.exec_lua("_G.answer = 'Cancel'")
    nvim.exec_lua(RUN, "Simplify (AI)")
    wait_for("the question", lambda: nvim.exec_lua("return #_G.asked") > 0)
    wait_for("the note", lambda: any("was not applied" in n["msg"] for n in nvim.exec_lua("return _G.notes")))
    assert text(nvim) == original
    assert nvim.exec_lua("return vim.bo.modified") is False


def test_the_plugin_advertises_change_annotations(nvim: Any) -> None:
    caps = nvim.exec_lua("return vim.lsp.get_clients({ name = 'codeflow' })[1].capabilities.workspace.workspaceEdit")
    assert caps["changeAnnotationSupport"] == {"groupsOnLabel": False}
