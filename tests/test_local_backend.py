"""The local llama.cpp backend on tiny real GGUFs: formats, cancellation, warm documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.errors import ModelLoadError, ModelNotFoundError
from codeflow.quant.local import LocalBackend

OPTS = GenOptions(max_tokens=16, temperature=0.0)


def generate(backend: LocalBackend, text: str, key: str = "a", opts: GenOptions = OPTS) -> str:
    return "".join(backend.stream(Prompt(text=text, key=key), opts, CancelToken()))


def test_model_info_reads_format_from_the_model(models_dir: Path) -> None:
    base = LocalBackend(models_dir / "base.gguf", n_ctx=512)
    fim = LocalBackend(models_dir / "fim.gguf", n_ctx=512)
    vocab_only = LocalBackend(models_dir / "fim_vocab.gguf", n_ctx=512)
    chat = LocalBackend(models_dir / "chat.gguf", n_ctx=512)
    try:
        assert base.info.prompt_kind == "prefix"
        assert fim.info.prompt_kind == "fim" and fim.info.fim.prefix == "<|fim_prefix|>"
        assert fim.info.fim.file_sep == "<|file_sep|>"
        # No FIM ids in the metadata: llama.cpp finds the markers in the vocabulary itself.
        assert vocab_only.info.prompt_kind == "fim" and vocab_only.info.fim.middle == "<|fim_middle|>"
        assert chat.info.prompt_kind == "chat" and "im_start" in chat.info.chat_template
    finally:
        for b in (base, fim, vocab_only, chat):
            b.close()


def test_special_markers_are_single_tokens(models_dir: Path) -> None:
    fim = LocalBackend(models_dir / "fim.gguf", n_ctx=512)
    try:
        assert fim.count_tokens("<|fim_prefix|>") == 1
    finally:
        fim.close()


def test_cancel_stops_within_one_token(models_dir: Path) -> None:
    backend = LocalBackend(models_dir / "endless.gguf", n_ctx=2048)
    cancel = CancelToken()
    pieces = []
    try:
        for piece in backend.stream(Prompt(text="def f():"), GenOptions(max_tokens=1000), cancel):
            pieces.append(piece)
            if len(pieces) == 5:
                cancel.cancel()
        assert 5 <= len(pieces) <= 6
        assert cancel.tokens_after_cancel <= 1
    finally:
        backend.close()


def test_switching_documents_restores_their_state_exactly(models_dir: Path) -> None:
    text_a = "def alpha(x):\n    return x * 2\n\n" * 8 + "def beta("
    text_b = "class Gamma:\n    value = 3\n\n" * 8 + "class Delta("
    cold = LocalBackend(models_dir / "base.gguf", n_ctx=2048)
    try:
        want_a = generate(cold, text_a, key="cold")
    finally:
        cold.close()
    backend = LocalBackend(models_dir / "base.gguf", n_ctx=2048, warm_slots=2)
    try:
        generate(backend, text_a, key="a")
        generate(backend, text_b, key="b")
        restored_before = backend.restores
        again = generate(backend, text_a, key="a")
        assert backend.restores == restored_before + 1
        assert again == want_a  # the restored KV cache gives the same greedy output as a cold run
    finally:
        backend.close()


def test_prompt_longer_than_context_keeps_its_end(models_dir: Path) -> None:
    backend = LocalBackend(models_dir / "base.gguf", n_ctx=256)
    try:
        assert backend.count_tokens("word " * 400) > 256
        assert generate(backend, "word " * 400)  # the oldest tokens were dropped, not the request
    finally:
        backend.close()


def test_stop_strings_end_the_text_before_them(models_dir: Path) -> None:
    backend = LocalBackend(models_dir / "base.gguf", n_ctx=512)
    try:
        free = generate(backend, "def f(", opts=GenOptions(max_tokens=24))
        stop = free[3:5]
        if not stop.strip():
            pytest.skip("the random model produced whitespace where the stop string would be")
        cut = generate(backend, "def f(", opts=GenOptions(max_tokens=24, stop=(stop,)))
        assert cut == free[: free.index(stop)]
    finally:
        backend.close()


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        LocalBackend(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 100)
    with pytest.raises(ModelLoadError, match="bad.gguf"):
        LocalBackend(bad)
