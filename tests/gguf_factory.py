"""Write tiny random-weight llama-architecture GGUF files for tests and benchmarks.

The files are real GGUFs that llama.cpp loads and runs; only the weights are random. Variants
cover the prompt formats: FIM markers (in metadata, or only in the vocabulary), a chat template,
or neither. `newline=False` and `eos=False` bias the output row of those tokens far down, so a
generation never ends on its own: the cancellation tests rely on that. `nan_weights=True` writes a
file that loads fine but whose layers are NaN, so it generates nothing (issue 12).
"""

from __future__ import annotations

import string
from pathlib import Path

import gguf
import numpy as np

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|endoftext|>")
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>")
WORDS = ("def", "return", "self", "class", "import", "from", "user", "login", "if", "for", "in")


def _vocab(fim: bool, chat: bool) -> tuple[list[str], list[int], list[float]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for special in (FIM_TOKENS if fim else ()) + (CHAT_TOKENS if chat else ()):
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(gguf.TokenType.BYTE)
    pieces = [c for c in string.ascii_letters + string.digits + string.punctuation]
    pieces += ["\u2581", "\u2581\u2581", "\u2581\u2581\u2581\u2581"]
    pieces += ["\u2581" + w for w in WORDS] + list(WORDS)
    for piece in pieces:
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    # SentencePiece merges by score: longer pieces win.
    scores = [0.0 if t != gguf.TokenType.NORMAL else float(len(tok)) for tok, t in zip(tokens, types)]
    return tokens, [int(t) for t in types], scores


def write_tiny_gguf(
    path: Path,
    *,
    fim: bool | str = False,
    chat_template: str | None = None,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx: int = 2048,
    newline: bool = True,
    eos: bool = True,
    byte_output: bool = True,
    seed: int = 0,
    nan_weights: bool = False,
) -> Path:
    """Write a runnable random-weight GGUF; `fim` is True/"metadata" (ids in metadata) or "vocab"."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, types, scores = _vocab(bool(fim), chat_template is not None)
    ids = {tok: i for i, tok in enumerate(tokens)}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"tiny-{'fim' if fim else 'chat' if chat_template else 'base'}-{seed}")
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores(scores)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(ids["<|endoftext|>"] if fim else ids["<|im_end|>"] if chat_template else 2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    if fim in (True, "metadata"):
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_PRE_ID, ids["<|fim_prefix|>"])
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_SUF_ID, ids["<|fim_suffix|>"])
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_MID_ID, ids["<|fim_middle|>"])
        writer.add_uint32(gguf.Keys.Tokenizer.FIM_SEP_ID, ids["<|file_sep|>"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    ends = ("</s>", "<|endoftext|>", "<|im_end|>") if eos else ()
    banned = [
        i for i, t in enumerate(types)
        if t in (gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN) and tokens[i] not in ends
    ]
    if not newline:
        banned.append(ids["<0x0A>"])
    if not byte_output:
        # Byte tokens still encode the prompt; they are only kept out of the output, because
        # llama-cpp-python's streaming re-decodes an undecodable byte run on every token.
        banned += [i for i, t in enumerate(types) if t == gguf.TokenType.BYTE and tokens[i] != "<0x0A>"]
    for name, array in _weights(len(tokens), n_layer, n_embd, n_head, n_head_kv, n_ff, banned, seed):
        if nan_weights and name.startswith("blk.") and array.ndim == 2:
            array = np.full_like(array, np.nan)  # a corrupt download or a broken conversion
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _weights(
    n_vocab: int, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int,
    banned: list[int], seed: int,
) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)

    def rand(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    head_dim = n_embd // n_head
    embd = rand(n_vocab, n_embd, scale=0.5)
    # Dimension 0 carries a constant through the residual stream, so the output rows below can
    # push banned tokens (control tokens, newline or end-of-text) far down whatever the input.
    embd[:, 0] = 4.0
    output = rand(n_vocab, n_embd, scale=0.5)
    output[:, 0] = 0.0
    output[banned, 0] = -50.0
    out = [("token_embd.weight", embd), ("output_norm.weight", np.ones(n_embd, np.float32)),
           ("output.weight", output)]
    for i in range(n_layer):
        out += [
            (f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.attn_q.weight", rand(n_embd, n_embd)),
            (f"blk.{i}.attn_k.weight", rand(n_head_kv * head_dim, n_embd)),
            (f"blk.{i}.attn_v.weight", rand(n_head_kv * head_dim, n_embd)),
            (f"blk.{i}.attn_output.weight", rand(n_embd, n_embd)),
            (f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32)),
            (f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd)),
            (f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd)),
            (f"blk.{i}.ffn_down.weight", rand(n_embd, n_ff)),
        ]
    return out
