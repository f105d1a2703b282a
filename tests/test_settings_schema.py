"""One settings schema (issue 17, section 4): the msgspec `Settings` holds bounds and descriptions,
Python refuses out-of-range values itself, and VS Code's package.json is generated from it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from lsprotocol import types

from codeflow.lsp_server.settings import Settings, apply_layer, build
from lsp_session import inline_params, lsp_session, open_doc, stats

CLIENT = Path(__file__).resolve().parent.parent / "vscode-client"


def generator() -> ModuleType:
    """vscode-client/scripts/gen_configuration.py, imported by path (it is a script, not a module)."""
    spec = importlib.util.spec_from_file_location("gen_configuration", CLIENT / "scripts" / "gen_configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_package_json_is_what_the_generator_writes() -> None:
    gen = generator()
    committed = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    assert committed["contributes"]["configuration"] == gen.configuration(), (
        "vscode-client/package.json is out of date with lsp_server/settings.py: run `npm run gen-settings`"
    )
    assert gen.main(["--check"]) == 0


def test_check_fails_on_a_stale_package_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = generator()
    pkg = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))
    pkg["contributes"]["configuration"]["properties"]["codeflow.model.nCtx"]["minimum"] = 1
    stale = tmp_path / "package.json"
    stale.write_text(json.dumps(pkg), encoding="utf-8")
    assert gen.main(["--check", "--package-json", str(stale)]) == 1
    assert "npm run gen-settings" in capsys.readouterr().err
    assert gen.main(["--package-json", str(stale)]) == 0
    assert gen.main(["--check", "--package-json", str(stale)]) == 0
    # Only the configuration is rewritten; the rest of package.json stays as it was.
    assert json.loads(stale.read_text(encoding="utf-8"))["scripts"] == pkg["scripts"]


def leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_every_setting_is_contributed_with_its_default_and_description() -> None:
    gen = generator()
    props = gen.configuration()["properties"]
    defaults = leaves(msgspec.json.decode(msgspec.json.encode(Settings())))
    server = {k.removeprefix("codeflow."): v for k, v in props.items() if k not in gen.CLIENT_PROPERTIES}
    assert set(server) == set(defaults)
    for key, prop in server.items():
        assert prop["default"] == defaults[key], key
        assert prop["markdownDescription"].strip(), key
    assert server["model.nCtx"]["minimum"] == 256
    assert server["model.kvType"]["enum"] == ["f16", "q8_0", "q4_0"]  # declared order, not sorted
    assert server["completion.disabledLanguages"] == {
        "type": "array", "default": [], "items": {"type": "string"}, "scope": "language-overridable",
        "markdownDescription": server["completion.disabledLanguages"]["markdownDescription"],
    }


def test_a_field_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generator()

    class Bare(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
        undocumented: int = 1

    monkeypatch.setattr(gen, "Settings", Bare)
    with pytest.raises(gen.SchemaError, match="codeflow.undocumented: give it a description"):
        gen.configuration()


@pytest.mark.parametrize(
    ("raw", "key", "bound"),
    [
        ({"model": {"nCtx": 100}}, "model.nCtx", ">= 256"),
        ({"model": {"nGpuLayers": -2}}, "model.nGpuLayers", ">= -1"),
        ({"model": {"stallTimeoutS": 0.5}}, "model.stallTimeoutS", ">= 1"),
        ({"completion": {"maxTokens": 0}}, "completion.maxTokens", ">= 1"),
        ({"completion": {"temperature": -0.1}}, "completion.temperature", ">= 0"),
        ({"remote": {"retries": -1}}, "remote.retries", ">= 0"),
        ({"hover": {"explain_max_tokens": 0}}, "hover.explainMaxTokens", ">= 1"),
    ],
)
def test_python_refuses_an_out_of_range_value_and_keeps_the_previous(raw: dict, key: str, bound: str) -> None:
    before, errors = apply_layer(Settings(), {"model": {"nCtx": 2048}})
    assert errors == []
    after, errors = apply_layer(before, {**raw, "logLevel": "debug"})
    assert [e.key for e in errors] == [key]
    assert bound in errors[0].reason
    # The bad leaf keeps its value; the good leaf in the same layer still applies.
    assert msgspec.structs.replace(after, log_level="info") == before
    assert after.log_level == "debug"


def test_bounds_hold_at_the_edge() -> None:
    settings, errors = apply_layer(Settings(), {"model": {"nCtx": 256, "nGpuLayers": -1, "stallTimeoutS": 1}})
    assert errors == []
    assert (settings.model.n_ctx, settings.model.n_gpu_layers, settings.model.stall_timeout_s) == (256, -1, 1.0)


def test_an_out_of_range_value_in_codeflow_toml_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    (tmp_path / "codeflow.toml").write_text("[model]\nn_ctx = 64\nn_threads = 2\n")
    settings, errors = build(tmp_path)
    assert [str(e) for e in errors] == ["invalid setting model.nCtx: Expected `int` >= 256 - at `$.model.nCtx`"]
    assert (settings.model.n_ctx, settings.model.n_threads) == (4096, 2)


async def test_server_tells_once_logs_and_keeps_serving(workspace: Path, models_dir: Path, tmp_path: Path) -> None:
    options = {"model": {"path": str(models_dir / "base.gguf"), "nCtx": 100}, "completion": {"maxTokens": 0}}
    async with lsp_session(workspace, options, tmp_path) as client:
        uri = open_doc(client, workspace / "main.py")
        result = await client.text_document_inline_completion_async(inline_params(uri, 0, 6, invoked=True))
        assert isinstance(result, types.InlineCompletionList)
        assert (await stats(client))["tokens"] > 0  # still completing, with the default values
        for key, bound in (("model.nCtx", ">= 256"), ("completion.maxTokens", ">= 1")):
            shown = [m.message for m in client.messages if key in m.message]
            assert len(shown) == 1 and bound in shown[0], client.messages
            assert any(key in m.message for m in client.log_messages), client.log_messages


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "main.py").write_text("import os\n\n\ndef main():\n    cfg = os.environ\n")
    return root
