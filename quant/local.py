"""The local backend: llama-cpp-python in this process, with per-document warm KV states."""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from codeflow.quant.backend import CancelToken, FimTokens, GenOptions, ModelInfo, Prompt
from codeflow.quant.errors import BackendError, ModelLoadError, ModelNotFoundError
from codeflow.quant.lookup import (
    MIN_P,
    PROBE_TEXT,
    TOP_K,
    LookupTally,
    batch_invariant,
    can_roll_back,
    lookup_steps,
)

log = logging.getLogger(__name__)

KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml_type ids
# Prompt tokens evaluated between two cancel checks. llama.cpp evaluates a whole prompt (up to
# n_batch = 512 tokens per call) without looking back, so a cancelled request used to finish its
# prompt first: seconds on a CPU (issue 12). Small enough to stop fast, large enough to batch.
PREFILL_BATCH = 64


class _SeqState:
    """One document's saved KV cache (sequence 0 only, not the logits) and its token ids."""

    def __init__(self, tokens: list[int], data: bytes) -> None:
        self.tokens = tokens
        self.data = data


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LocalBackend:
    """A GGUF model run by llama.cpp; one generation at a time, cancellable between tokens."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 4096,
        n_gpu_layers: int = 0,
        n_threads: int = 0,
        kv_type: str = "f16",
        warm_slots: int = 4,
        flash_attn: bool = False,
        lookup_check: bool = False,
    ) -> None:
        self._path = str(model_path)
        if not Path(self._path).is_file():
            raise ModelNotFoundError(f"model file not found: {self._path}")
        self._llm = _load(self._path, n_ctx, n_gpu_layers, n_threads, kv_type, flash_attn)
        self._lock = threading.Lock()
        self._closed = False
        self._warm: OrderedDict[str, _SeqState] = OrderedDict()
        self._warm_slots = warm_slots
        self._current_key = ""
        self._info = _model_info(self._llm, self._path, n_gpu_layers)
        self.tokens_generated = 0
        self.restores = 0
        self.lookup_tally = LookupTally()
        # Whether GenOptions.lookup may run. By default wherever the model can drop rejected drafts:
        # on kernels whose batched logits differ from one-token ones by rounding, the answer is then
        # the greedy answer to slightly different numbers, as with llama.cpp's own speculative
        # decoding (SmolLM2 rewrites on 2 cores, bench/latency_lookup.py: 1.36-1.48x plain decode
        # with its Q4_1 weights, 1.5-1.7x converted to Q8_0 or Q4_K_M).
        # `lookup_check` asks for plain decoding's exact output instead: None until a request asks
        # for lookup, then probed once (see _lookup_allowed).
        self._lookup_ok: bool | None = None if lookup_check else can_roll_back(self._llm)
        self._tokens: tuple[list[bytes], object] | None = None

    @property
    def info(self) -> ModelInfo:
        """The loaded model's description."""
        return self._info

    @property
    def llama(self):  # noqa: ANN201 - llama_cpp.Llama, kept untyped to avoid importing it here
        """The underlying llama_cpp.Llama, for benchmarks and the chat formatter."""
        return self._llm

    def count_tokens(self, text: str) -> int:
        """Exact token count with the model's tokenizer."""
        return len(self.tokenize(text, add_bos=False))

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        """Token ids of `text`, special markers parsed."""
        if self._closed:
            raise BackendError("the local model was closed")
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Yield text pieces; `cancel` is checked after every token, so it stops within one step."""
        with self._lock:
            if self._closed:  # a job thread that outlived its backend (a test, a settings change)
                raise BackendError("the local model was closed")
            tokens = self._fit(self.tokenize(prompt.text, add_bos=prompt.add_bos), opts.max_tokens)
            if opts.lookup > 0 and self._lookup_ok is None:
                self._lookup_ok = self._lookup_allowed()
            self._switch_to(prompt.key, tokens)
            if not self._prefill(tokens, cancel):
                return
            steps = self._steps(prompt, tokens, opts)
            try:
                yield from self._decode(steps, opts, cancel)
            finally:
                steps.close()

    def _steps(self, prompt: Prompt, tokens: list[int], opts: GenOptions) -> Iterator[int]:
        """The generated token ids: drafted from the prompt and verified in batches when
        `opts.lookup` asks for it and this model allows it, else one `generate` step at a time."""
        # The lead constraint is a Python logits processor that generate() runs; the lookup
        # loop builds llama.cpp's sampler chain itself, so a lead keeps plain decoding.
        if opts.lookup > 0 and not prompt.lead and self._lookup_ok:
            return lookup_steps(self._llm, tokens, opts, self.lookup_tally)
        self._llm.set_seed(opts.seed)
        # generate() yields every token, unlike create_completion(stream=True), which holds
        # tokens back while their bytes are not valid UTF-8 and then cannot be cancelled.
        return self._llm.generate(
            tokens, temp=opts.temperature, top_p=opts.top_p, top_k=TOP_K, min_p=MIN_P,
            repeat_penalty=opts.repeat_penalty, logits_processor=self._lead(prompt.lead, len(tokens)),
        )

    def _lookup_allowed(self) -> bool:
        """Whether lookup gives plain decoding's output here: the model can drop rejected drafts
        and its kernels give a position the same logits inside a batch as alone (issue 16 §4).

        The probe uses the KV cache, so the live document's state is saved first and restored by
        the next `_switch_to`.
        """
        if not can_roll_back(self._llm):
            log.info("prompt lookup off for %s: its memory cannot drop tokens", self._info.name)
            return False
        self._save_current()
        self._current_key = ""
        ok = batch_invariant(self._llm, self.tokenize(PROBE_TEXT))
        self._llm.reset()
        if not ok:
            log.info("prompt lookup off for %s: batched logits differ from one-token logits, so its "
                     "output could differ from plain decoding (flash attention may help)", self._info.name)
        return ok

    def _lead(self, lead: str, prompt_tokens: int):  # noqa: ANN202 - LogitsProcessorList | None
        """A constraint that makes the answer start with `lead` (the half-typed word token healing
        held back), or None without one."""
        if not lead:
            return None
        from llama_cpp import LogitsProcessorList

        from codeflow.quant.constrain import LeadConstraint, TokenTable

        if self._tokens is None:  # once per model: every token's bytes (Gemma: 262k, ~0.5 s)
            pieces = [self._llm.detokenize([t]) for t in range(self._llm.n_vocab())]
            self._tokens = (pieces, TokenTable(pieces))
        pieces, table = self._tokens

        def generated(ids: Sequence[int]) -> bytes:
            return b"".join(pieces[t] for t in ids[prompt_tokens:])

        return LogitsProcessorList([LeadConstraint(table, lead, generated)])

    def _prefill(self, tokens: list[int], cancel: CancelToken) -> bool:
        """Evaluate the prompt, but its last token, in batches of PREFILL_BATCH, reusing what the KV
        cache already holds; False when `cancel` was set between two batches.

        `generate` then finds all but the last token cached and evaluates only that one, which
        also refreshes the logits after a restored state.
        """
        llm = self._llm
        end = len(tokens) - 1
        keep = min(_common_prefix(list(llm.input_ids[: llm.n_tokens]), tokens), end)
        if keep < llm.n_tokens and not llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            llm.reset()  # this model cannot drop a KV suffix: evaluate from the start
            keep = 0
        llm.n_tokens = keep
        for start in range(keep, end, PREFILL_BATCH):
            if cancel.cancelled:
                return False
            llm.eval(tokens[start: min(start + PREFILL_BATCH, end)])
        return not cancel.cancelled

    def _fit(self, tokens: list[int], max_tokens: int) -> list[int]:
        """Keep the prompt inside the context; drop its oldest tokens (after BOS) if it must."""
        limit = self._llm.n_ctx() - max(8, min(max_tokens, self._llm.n_ctx() // 4))
        if len(tokens) <= limit:
            return tokens
        log.warning("prompt has %d tokens, context holds %d: dropping its start", len(tokens), limit)
        return tokens[:1] + tokens[len(tokens) - limit + 1:]

    def _decode(self, steps: Iterator[int], opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Turn token ids into text: UTF-8 decoded incrementally, stop strings held back."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = llama_cpp().llama_model_get_vocab(self._llm.model)
        held, produced = "", []
        for count, token in enumerate(steps, start=1):
            self.tokens_generated += 1
            if cancel.cancelled:
                cancel.tokens_after_cancel += 1
                return
            if llama_cpp().llama_vocab_is_eog(vocab, token):
                break
            held += decoder.decode(self._llm.detokenize([token], prev_tokens=produced))
            produced.append(token)
            cut = _find_stop(held, opts.stop)
            if cut is not None:
                if held[:cut]:
                    yield held[:cut]
                return
            safe = len(held) - _stop_overlap(held, opts.stop)
            if safe > 0:
                yield held[:safe]
                held = held[safe:]
            if count >= opts.max_tokens or cancel.cancelled:
                break
        if held:
            yield held

    def _switch_to(self, key: str, tokens: list[int]) -> None:
        """Restore the saved KV state of `key` when it shares more with `tokens` than the live one."""
        llm = self._llm
        live = _common_prefix(list(llm.input_ids[: llm.n_tokens]), tokens)
        saved = self._warm.get(key) if key != self._current_key else None
        if saved is not None and _common_prefix(saved.tokens, tokens) > live + 8:
            self._save_current()
            self._load(saved)
        elif key != self._current_key:
            self._save_current()
        self._current_key = key
        if key in self._warm:
            self._warm.move_to_end(key)

    def _save_current(self) -> None:
        llm = self._llm
        if not self._current_key or llm.n_tokens == 0 or self._warm_slots <= 0:
            return
        size = llama_cpp().llama_state_seq_get_size(llm.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        written = llama_cpp().llama_state_seq_get_data(llm.ctx, buf, size, 0)
        self._warm[self._current_key] = _SeqState(list(llm.input_ids[: llm.n_tokens]), ctypes.string_at(buf, written))
        self._warm.move_to_end(self._current_key)
        while len(self._warm) > self._warm_slots:
            self._warm.popitem(last=False)

    def _load(self, state: _SeqState) -> None:
        llm = self._llm
        llm._ctx.kv_cache_clear()
        buf = (ctypes.c_uint8 * len(state.data)).from_buffer_copy(state.data)
        if llama_cpp().llama_state_seq_set_data(llm.ctx, buf, len(state.data), 0) == 0:
            log.warning("could not restore a saved KV state; evaluating the prompt in full")
            llm.reset()
            return
        self.restores += 1
        n = len(state.tokens)
        llm.input_ids[:n] = state.tokens
        llm.n_tokens = n
        llm._requires_eval = True

    def close(self) -> None:
        """Free the model and its context."""
        with self._lock:
            self._closed = True
            self._warm.clear()
            self._llm.close()


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the first stop string starts in `text`, if any does."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _stop_overlap(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could begin a stop string (held back)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                best = max(best, n)
                break
    return best


_params_lock = threading.Lock()


def amx_in_use() -> bool:
    """Whether llama.cpp's CPU backend has AMX kernels and this CPU runs them."""
    return b"AMX_INT8 = 1" in llama_cpp().llama_print_system_info()


def load_llama(**kwargs: Any):  # noqa: ANN201 - llama_cpp.Llama
    """`llama_cpp.Llama(**kwargs)`, without llama.cpp's AMX weight buffers on a CPU that has AMX.

    With them, the first multi-token batch crashed the process with SIGSEGV (llama-cpp-python
    0.3.36 built natively on a Xeon with AMX-INT8: SmolLM2 Q4_1 and Gemma 3 Q4_K_M; one-token
    prompts ran). Without the extra buffer types the AVX-512 kernels run the same models. `Llama`
    takes no such argument, so its default model params are wrapped while it loads.
    """
    from llama_cpp import Llama

    if not amx_in_use():
        return Llama(**kwargs)
    low = llama_cpp().llama_cpp
    with _params_lock:
        default = low.llama_model_default_params

        def without_extra_buffers():  # noqa: ANN202 - llama_model_params
            params = default()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = without_extra_buffers
        try:
            return Llama(**kwargs)
        finally:
            low.llama_model_default_params = default


def llama_cpp():  # noqa: ANN201 - the low-level module
    """The low-level llama_cpp module, imported on first use (it loads the shared library)."""
    import llama_cpp as module

    return module


def _load(path: str, n_ctx: int, n_gpu_layers: int, n_threads: int, kv_type: str,  # noqa: ANN202
          flash_attn: bool = False):
    kv = KV_TYPES.get(kv_type)
    if kv is None:
        raise ModelLoadError(path, f"unknown KV cache type {kv_type!r}; use one of {sorted(KV_TYPES)}")
    kwargs = {"type_k": kv, "type_v": kv} if kv_type != "f16" else {}
    try:
        # verbose=False would point fd 1 at /dev/null while loading (llama_cpp's
        # suppress_stdout_stderr): LSP messages the event loop writes meanwhile would be lost.
        llm = load_llama(
            model_path=path,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads or None,
            # llama-cpp-python gives prompt batches every core otherwise: on 2 loaded cores a
            # 64-token batch took 1.4-2.5 s of CPU with 2 batch threads, 0.4 s with 1 (issue 16).
            n_threads_batch=n_threads or None,
            verbose=True,
            # A quantized KV cache needs flash attention. Exact prompt lookup wants it too: without
            # it, llama.cpp's CPU attention gave SmolLM2 logits up to 1.3 apart for one position
            # evaluated alone or inside a batch, with it bit-identical (Gemma 3 270M: apart either
            # way). Off by default: it slowed SmolLM2's decode here (issue 16 §4).
            flash_attn=flash_attn or kv_type != "f16",
            **kwargs,
        )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(path, str(exc) or type(exc).__name__) from exc
    from llama_cpp._logger import set_verbose

    llm.verbose = False  # quiet from here on, by log level rather than by redirecting fds
    set_verbose(False)
    return llm


def _token_text(vocab, token: int) -> str | None:  # noqa: ANN001
    if token < 0:
        return None
    raw = llama_cpp().llama_vocab_get_text(vocab, token)
    return raw.decode("utf-8", errors="replace") if raw else None


def fim_tokens(llm) -> FimTokens | None:  # noqa: ANN001
    """The FIM markers llama.cpp found in this model's vocabulary, or None."""
    lib = llama_cpp()
    vocab = lib.llama_model_get_vocab(llm.model)
    pre = _token_text(vocab, lib.llama_vocab_fim_pre(vocab))
    suf = _token_text(vocab, lib.llama_vocab_fim_suf(vocab))
    mid = _token_text(vocab, lib.llama_vocab_fim_mid(vocab))
    if not (pre and suf and mid):
        return None
    eot = [_token_text(vocab, lib.llama_vocab_eot(vocab)), _token_text(vocab, lib.llama_vocab_fim_pad(vocab))]
    return FimTokens(
        prefix=pre,
        suffix=suf,
        middle=mid,
        file_sep=_token_text(vocab, lib.llama_vocab_fim_sep(vocab)),
        repo_name=_token_text(vocab, lib.llama_vocab_fim_rep(vocab)),
        eot=tuple(t for t in eot if t),
    )


def _model_info(llm, path: str, n_gpu_layers: int) -> ModelInfo:  # noqa: ANN001
    meta = llm.metadata
    lib = llama_cpp()
    vocab = lib.llama_model_get_vocab(llm.model)
    gpu = n_gpu_layers != 0 and lib.llama_supports_gpu_offload()
    return ModelInfo(
        name=meta.get("general.name") or Path(path).stem,
        path=path,
        arch=meta.get("general.architecture", "unknown"),
        n_ctx=llm.n_ctx(),
        n_ctx_train=llama_cpp().llama_model_n_ctx_train(llm.model),
        fim=fim_tokens(llm),
        chat_template=meta.get("tokenizer.chat_template") or None,
        bos=_token_text(vocab, lib.llama_vocab_bos(vocab)),
        eos=_token_text(vocab, lib.llama_vocab_eos(vocab)),
        device="gpu" if gpu else "cpu",
    )
