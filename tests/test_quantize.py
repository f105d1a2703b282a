"""`codeflow quantize`: a round trip on a tiny GGUF, refusals, and clean errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from gguf_factory import write_tiny_gguf

from codeflow.lsp_server import cmd_quantize
from codeflow.quant.errors import QuantizeError
from codeflow.quant.gguf_info import read_gguf
from codeflow.quant.local import load_llama
from codeflow.quant.quantize import quantize

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture
def f32_model(tmp_path: Path) -> Path:
    # Q8_0 and Q4_0 use 32-element blocks: every row length here is a multiple of 32.
    return write_tiny_gguf(tmp_path / "in.gguf", n_layer=2, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cmd_quantize.register(parser.add_subparsers())
    args = parser.parse_args(["quantize", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("qtype, tensor_type", [("Q8_0", "Q8_0"), ("q4_0", "Q4_0")])
def test_round_trip_loads_and_reports_the_new_type(f32_model: Path, tmp_path: Path, qtype: str, tensor_type: str) -> None:
    out = tmp_path / f"out-{qtype}.gguf"
    seen: list[tuple[int, int, str]] = []
    info = quantize(f32_model, out, qtype, progress=lambda i, n, name: seen.append((i, n, name)))
    assert info.file_type == qtype.upper() == read_gguf(out).file_type
    assert tensor_type in {t.type for t in info.tensors}
    assert out.stat().st_size < f32_model.stat().st_size / 3
    assert not out.with_name(out.name + ".part").exists()
    # Progress covers every tensor, in order.
    n = len(read_gguf(f32_model).tensors)
    assert [s[0] for s in seen] == list(range(1, n + 1)) and seen[0][1] == n
    llm = load_llama(model_path=str(out), n_ctx=128, n_gpu_layers=0, verbose=False)
    try:
        tokens = llm.tokenize(b"def return", add_bos=True)
        llm.eval(tokens)
        assert llm.n_tokens == len(tokens)
    finally:
        llm.close()


def test_cli_refuses_to_overwrite(f32_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "exists.gguf"
    out.write_bytes(b"keep me")
    rc, _, err = _run([str(f32_model), str(out), "--type", "Q8_0"], capsys)
    assert rc == 2 and "refusing to overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep me"


def test_cli_progress_and_summary(f32_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "q.gguf"
    rc, stdout, err = _run([str(f32_model), str(out), "--type", "Q8_0"], capsys)
    assert rc == 0 and "Q8_0" in stdout and out.is_file()
    assert "100%" in err and "token_embd.weight" in err


@pytest.mark.parametrize("make, qtype, message", [
    (lambda p, good: None, "Q8_0", "does not exist"),
    (lambda p, good: p.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(8)), "Q8_0", "not a usable GGUF"),
    (lambda p, good: p.write_bytes(b"not a model at all"), "Q8_0", "not a usable GGUF"),
    (lambda p, good: p.write_bytes(good.read_bytes()[:-64]), "Q8_0", "truncated download"),
    (None, "Q9_Z", "unknown quant type"),
])
def test_cli_clean_errors(make, qtype: str, message: str, f32_model: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    src = f32_model
    if make is not None:
        src = tmp_path / "bad.gguf"
        make(src, f32_model)
    out = tmp_path / "never.gguf"
    rc, _, err = _run([str(src), str(out), "--type", qtype], capsys)
    assert rc == 2 and message in err and "Traceback" not in err
    assert not out.exists() and not out.with_name(out.name + ".part").exists()


def test_requantizing_needs_a_flag(f32_model: Path, tmp_path: Path) -> None:
    q8 = quantize(f32_model, tmp_path / "q8.gguf", "Q8_0")
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize(Path(q8.path), tmp_path / "q4.gguf", "Q4_0")
    again = quantize(Path(q8.path), tmp_path / "q4.gguf", "Q4_0", allow_requantize=True)
    assert again.file_type == "Q4_0"
