"""Model presets, `codeflow model list|pull|use|remove` against a fake hub, and `plan --recommend`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from fake_hub import FakeHub
from gguf_factory import write_tiny_gguf

from codeflow.quant.errors import PresetError
from codeflow.quant.presets import load_presets

CLI = [sys.executable, "-m", "codeflow.lsp_server.cli"]
REPO = "test-org/tiny-coder-GGUF"
FILE = "tiny-coder-Q8_0.gguf"
# A user preset for the tiny FIM model; it names the built-in "qwen-fim" prompt format.
USER_PRESETS = f"""
[[preset]]
name = "tiny-coder"
display = "Tiny Coder"
role = "completion"
rank = 1
repo = "{REPO}"
file = "tiny-coder-{{quant}}.gguf"
quants = ["Q8_0"]
prompt = "qwen-fim"
geometry = {{ arch = "llama", n_layer = 2, n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_ff = 128, n_vocab = 400, n_ctx_train = 2048 }}
"""


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a tiny FIM GGUF, as the hub serves them."""
    return write_tiny_gguf(tmp_path_factory.mktemp("hub") / FILE, fim=True).read_bytes()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A user config dir holding the tiny preset; HF_HOME beside it."""
    config = tmp_path / "config" / "codeflow"
    config.mkdir(parents=True)
    (config / "presets.toml").write_text(USER_PRESETS)
    return tmp_path


def cli(home: Path, endpoint: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(home / "hf"), XDG_CONFIG_HOME=str(home / "config"))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def cached_ggufs(home: Path) -> list[Path]:
    return [p for p in (home / "hf").rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size > 1000]


def test_builtin_presets_have_files_sizes_and_marked_sources() -> None:
    presets = load_presets(Path("/nonexistent"))
    assert {"qwen2.5-coder-7b", "qwen2.5-coder-32b-instruct", "deepseek-coder-33b-instruct",
            "iquest-coder-v1-40b-instruct"} <= set(presets)
    # Parameter counts from the geometry match the published ones (7.61B, 33.3B).
    assert 7.5e9 < presets["qwen2.5-coder-7b"].profile.params() < 7.7e9
    assert 33.0e9 < presets["deepseek-coder-33b-instruct"].profile.params() < 33.6e9
    assert presets["qwen2.5-coder-7b-instruct"].file_for("q4_k_m") == "Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf"
    for p in presets.values():
        assert "unverified" in p.prompt.source, p.name
        assert p.remote or all(q in p.file_for(q) for q in p.quants), p.name
    assert presets["iquest-coder-v1-40b-loop-instruct"].remote
    with pytest.raises(PresetError, match="has no IQ4_XS"):
        presets["deepseek-coder-6.7b"].file_for("IQ4_XS")


def test_a_broken_user_presets_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "presets.toml"
    bad.write_text('[[preset]]\nname = "x"\nrole = "sometimes"\n')
    with pytest.raises(PresetError, match=str(bad)):
        load_presets(bad)


def _recommend(*args: str) -> dict:
    proc = subprocess.run([*CLI, "plan", "--recommend", "--json", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_recommend_on_a_small_cpu_box_and_a_24gb_gpu() -> None:
    cpu = _recommend("--gpu", "none", "--ram", "24G", "--cores", "2")
    assert cpu["completion"]["n_gpu_layers"] == 0 and cpu["completion"]["preset"] == "qwen2.5-coder-0.5b"
    assert cpu["chat"]["preset"].endswith("-instruct") and cpu["remote"] == []
    gpu = _recommend("--gpu", "1xRTX4090-24GB", "--ram", "64G")
    assert gpu["completion"]["preset"] == "qwen2.5-coder-7b"
    # Both models are loaded at once, so together they fit the card's 95%.
    assert gpu["completion"]["needs_bytes"] + gpu["chat"]["needs_bytes"] < 0.95 * 24 * 2**30
    assert gpu["chat"]["n_gpu_layers"] == 49 and "14b-instruct" in gpu["chat"]["preset"]


def test_recommend_names_the_remote_alternative_when_nothing_fits() -> None:
    rec = _recommend("--gpu", "none", "--ram", "200M", "--cores", "1")
    assert rec["completion"] is None and rec["chat"] is None
    assert {r["role"] for r in rec["remote"]} == {"completion", "chat"}
    assert all(r["preset"].startswith("iquest-coder") and "vLLM" in r["reason"] for r in rec["remote"])


def test_fresh_pull_reports_progress_and_lands_in_hf_home(home: Path, tiny_gguf: bytes) -> None:
    with FakeHub({(REPO, FILE): tiny_gguf}) as hub:
        proc = cli(home, hub.url, "model", "pull", "tiny-coder", "--json")
        listed = cli(home, hub.url, "model", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-2]["event"] == "progress" and events[-2]["done"] == events[-2]["total"] == len(tiny_gguf)
    done = events[-1]
    assert done["event"] == "done" and done["quant"] == "Q8_0" and done["warnings"] == []
    assert Path(done["path"]).is_relative_to(home / "hf")
    assert hashlib.sha256(Path(done["path"]).read_bytes()).hexdigest() == done["sha256"]
    assert done["sha256"] == hashlib.sha256(tiny_gguf).hexdigest()
    row = next(r for r in json.loads(listed.stdout) if r["name"] == "tiny-coder")
    assert row["quants"][0]["pulled"] and row["fits"] and row["recommended_quant"] == "Q8_0"


def test_pull_resumes_after_a_cut_connection(home: Path, tmp_path: Path) -> None:
    # huggingface_hub writes 10 MiB chunks, so a resume needs a file past that: ~30 MiB here.
    data = write_tiny_gguf(tmp_path / FILE, fim=True, n_embd=512, n_ff=2048).read_bytes()
    cut = len(data) * 2 // 3
    with FakeHub({(REPO, FILE): data}, cut_after=cut) as hub:
        proc = cli(home, hub.url, "model", "pull", "tiny-coder", "--quant", "q8_0", "--json")
        ranges = hub.ranges()
    assert proc.returncode == 0, proc.stderr
    # The second request asks only for what was not written before the cut.
    assert len(ranges) == 2 and ranges[0] == "" and ranges[1].startswith("bytes=")
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 10 * 2**20 <= start <= cut
    done = json.loads(proc.stdout.splitlines()[-1])
    assert Path(done["path"]).read_bytes() == data


def test_a_checksum_mismatch_removes_the_file_and_says_so(home: Path, tiny_gguf: bytes) -> None:
    with FakeHub({(REPO, FILE): tiny_gguf}, corrupt=True) as hub:
        proc = cli(home, hub.url, "model", "pull", "tiny-coder")
    assert proc.returncode == 1
    assert "sha256" in proc.stderr and "does not match" in proc.stderr and "removed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cached_ggufs(home) == []


def test_offline_pull_names_the_host_and_its_setting(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    proc = cli(home, closed, "model", "pull", "tiny-coder")
    assert proc.returncode == 1
    assert closed in proc.stderr and "HF_ENDPOINT" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_preset_and_file_are_clear(home: Path, tiny_gguf: bytes) -> None:
    with FakeHub({(REPO, "other.gguf"): tiny_gguf}) as hub:
        missing = cli(home, hub.url, "model", "pull", "tiny-coder")
        unknown = cli(home, hub.url, "model", "pull", "no-such-model")
    assert missing.returncode == 1 and f"has no file {FILE}" in missing.stderr
    assert unknown.returncode == 1 and "unknown preset 'no-such-model'" in unknown.stderr


def test_use_before_pull_refuses(home: Path) -> None:
    proc = cli(home, "http://127.0.0.1:9", "model", "use", "tiny-coder")
    assert proc.returncode == 1 and "codeflow model pull tiny-coder" in proc.stderr
    assert not (home / "config" / "codeflow" / "codeflow.toml").exists()


def test_pull_use_complete_remove_end_to_end(home: Path, tiny_gguf: bytes, tmp_path: Path) -> None:
    user_toml = home / "config" / "codeflow" / "codeflow.toml"
    user_toml.write_text("# my settings\n[completion]\nmax_tokens = 8\n")
    with FakeHub({(REPO, FILE): tiny_gguf}) as hub:
        assert cli(home, hub.url, "model", "pull", "tiny-coder").returncode == 0
    used = cli(home, "http://127.0.0.1:9", "model", "use", "tiny-coder")
    assert used.returncode == 0, used.stderr
    written = msgspec.toml.decode(user_toml.read_bytes())
    pulled = Path(written["model"]["path"])
    assert pulled.read_bytes() == tiny_gguf and written["completion"]["max_tokens"] == 8
    assert user_toml.read_text().startswith("# my settings")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("def f(x):\n    return \n")
    proc = cli(home, "http://127.0.0.1:9", "complete", f"{ws / 'a.py'}:2:12", "--workspace", str(ws), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["prompt_kind"] == "fim" and out["tokens"] > 0
    removed = cli(home, "http://127.0.0.1:9", "model", "remove", "tiny-coder")
    assert removed.returncode == 0 and "freed" in removed.stdout
    assert not pulled.exists() and cached_ggufs(home) == []


def test_doctor_recommends_only_while_the_embedded_model_is_in_use(home: Path, tiny_gguf: bytes) -> None:
    before = cli(home, "http://127.0.0.1:9", "doctor", "--json", "--workspace", str(home))
    checks = {c["name"]: c for c in json.loads(before.stdout)}
    assert "codeflow model pull" in checks["recommendation"]["fix"] and checks["recommendation"]["ok"]
    model = home / "m.gguf"
    model.write_bytes(tiny_gguf)
    (home / "config" / "codeflow" / "codeflow.toml").write_text(f'[model]\npath = "{model}"\n')
    after = cli(home, "http://127.0.0.1:9", "doctor", "--json", "--workspace", str(home))
    assert "recommendation" not in {c["name"] for c in json.loads(after.stdout)}


NVIM_FLOW = """
vim.opt.rtp:prepend(%(plugin)r)
local config = require('codeflow.config')
config.options = vim.tbl_deep_extend('force', config.defaults, { cmd = %(cmd)s })
local commands = require('codeflow.commands')
local out = {}
vim.notify = function(msg) table.insert(out, msg) end
vim.ui.select = function(items, _, choose)
  for _, item in ipairs(items) do
    if item.name == 'tiny-coder' then table.insert(out, 'offered ' .. #items); return choose(item) end
  end
  choose(nil)
end
commands.restart = function() table.insert(out, 'restarted') end
commands.run({ fargs = { 'model' } })
local ok = vim.wait(120000, function() return vim.tbl_contains(out, 'restarted') end, 50)
vim.fn.writefile(out, %(log)r)
vim.cmd(ok and 'qa!' or 'cq!')
"""


def test_nvim_codeflow_model_pulls_and_uses_the_chosen_preset(home: Path, tiny_gguf: bytes, tmp_path: Path) -> None:
    from test_nvim import NVIM, PLUGIN

    if not NVIM.exists():
        pytest.skip(f"no nvim at {NVIM}")
    log = tmp_path / "nvim.log"
    cmd = "{%s}" % ", ".join(f"'{a}'" for a in (*CLI, "serve"))
    script = tmp_path / "flow.lua"
    script.write_text(NVIM_FLOW % {"plugin": str(PLUGIN), "cmd": cmd, "log": str(log)})
    with FakeHub({(REPO, FILE): tiny_gguf}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home / "hf"), XDG_CONFIG_HOME=str(home / "config"))
        proc = subprocess.run([str(NVIM), "--headless", "--clean", "-l", str(script)], env=env,
                              capture_output=True, text=True, timeout=180)
    lines = log.read_text().splitlines()
    assert proc.returncode == 0, (proc.stderr, lines)
    assert any(line.startswith("offered ") for line in lines)
    assert any("downloading tiny-coder Q8_0: 100%" in line for line in lines), lines
    assert any("model.path = " in line for line in lines) and lines[-1] == "restarted"
    written = msgspec.toml.decode((home / "config" / "codeflow" / "codeflow.toml").read_bytes())
    assert Path(written["model"]["path"]).read_bytes() == tiny_gguf
