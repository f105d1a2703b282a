"""Prompt-lookup speculative decoding (issue 16, section 4: faster rewrites).

A rewrite or an explanation quotes the code the prompt holds. The last few tokens generated are
then often found earlier in the context, and what followed them there is a good guess at what
comes next. Each step feeds the model [last token + up to N guessed tokens] in one batch with
logits at every position, samples each position in order with the same sampler chain a plain
`Llama.generate` builds, and keeps the guesses up to the first one the sampler disagrees with;
the sampled token there is the correction. Every kept token was sampled from logits conditioned
on exactly the tokens before it, with the sampler in the same state (penalty history, RNG) as
in plain decoding, so the output is the same token for token, provided llama.cpp computes a
position's logits inside a batch exactly as alone. That holds for some kernels and not others
(`batch_invariant`); elsewhere the output is the answer to logits that differ by rounding, as
with llama.cpp's own speculative decoding, and LocalBackend runs lookup there too unless asked
for exact output (`lookup_check`). The KV cells of rejected guesses are removed before the next
step. How many tokens a step drafts adapts to how many were kept (`DraftLength`).

This is llama-cpp-python's `LlamaPromptLookupDecoding` (llama_speculative.py) inside our own
decode loop, which that class cannot plug into: it needs `Llama(draft_model=...)`, logits for
every token (`logits_all`) and `Llama.generate`'s own prefill.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from codeflow.quant.backend import GenOptions
from codeflow.quant.errors import BackendError

# Longest n-gram first: a 4-token match predicts far better than a 1-token one, and a 1-token
# match ("\n", " ") guesses wrong so often that its failed drafts cost more than they save.
NGRAM_SIZES = (4, 3, 2)
# Sampling settings `LocalBackend.stream` passes to `Llama.generate` (the same chain is rebuilt here).
TOP_K = 40
MIN_P = 0.05
# What `batch_invariant` evaluates: ordinary code, over 8 tokens in any tokenizer.
PROBE_TEXT = "def area(width: float, height: float) -> float:\n    return width * height\n\n\nprint(area(3, 4))\n"
# Drafts per step at most, whatever GenOptions.lookup asks: a verify batch must fit n_batch (512),
# and on a CPU each drafted token costs a fifth to a half of a decode step (`draft_cost`).
MAX_DRAFT = 32


class LookupTally(msgspec.Struct, kw_only=True):
    """Draft tokens proposed and accepted, summed over generations."""

    drafted: int = 0
    accepted: int = 0


class Drafter:
    """The tokens so far and where each of their n-grams last ended, to guess what follows."""

    def __init__(self, tokens: Sequence[int], sizes: tuple[int, ...] = NGRAM_SIZES) -> None:
        self.tokens = list(tokens)
        self.sizes = sizes
        self._ends: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in sizes}
        self._indexed = 0

    def append(self, token: int) -> None:
        """Add one generated token."""
        self.tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the last n-gram;
        one token when only a shorter n-gram than the longest was found."""
        if limit <= 0:
            return []
        self._index()
        for n in self.sizes:
            if len(self.tokens) < n:
                continue
            end = self._ends[n].get(tuple(self.tokens[-n:]))
            if end is not None:
                # Weaker evidence, shorter guess: replaying the bench's SmolLM2 answers and ten
                # other rewrites, capping 3- and 2-token matches at one token sped lookup up 1-4%
                # at draft costs of 0.18-0.5 (a CPU) and cost 1% at 0.02; measured side by side
                # on the bench's prompts (Q4_1, 4 rounds), 1.426x -> 1.478x plain decoding.
                reach = limit if n == self.sizes[0] else min(limit, 1)
                return self.tokens[end + 1: end + 1 + reach]
        return []

    def _index(self) -> None:
        # Every n-gram ending before the last token: the one ending at it is the query and must
        # not find itself. Later occurrences overwrite earlier ones (the most recent wins).
        tokens = self.tokens
        for end in range(self._indexed, len(tokens) - 1):
            for n in self.sizes:
                if end + 1 >= n:
                    self._ends[n][tuple(tokens[end + 1 - n: end + 1])] = end
        self._indexed = max(self._indexed, len(tokens) - 1)


class DraftLength:
    """How many tokens to draft next: on a CPU each drafted token costs a fifth to a half of a
    decode step whether it is kept or not (`draft_cost`), so a draft starts at one token, doubles
    while every guess is kept, and falls back to one more than were kept when one is not
    (`bench/latency_lookup.py`, SmolLM2 rewrites on 2 cores, fixed 8 against this: 1.18x against
    1.36x plain decoding in one sitting, 1.35x against 1.53x in another). Replayed over the bench's answers at draft
    costs of 0.18-0.5 of a step, other rules (start at 2 or 4, halve or restart on a miss, limits of
    4-32, a learned acceptance rate per run length) came within 2% of this one or fell behind it."""

    def __init__(self, most: int) -> None:
        self.most = max(1, most)
        self.now = 1

    def update(self, drafted: int, kept: int) -> None:
        """After a step that drafted `drafted` tokens and kept `kept` of them."""
        if drafted:
            self.now = min(self.most, self.now * 2) if kept == drafted else max(1, kept + 1)


def can_roll_back(llm: Any) -> bool:
    """Whether this model's memory can drop its newest cells (recurrent state cannot)."""
    lib = _lib()
    return not (lib.llama_model_is_recurrent(llm.model) or lib.llama_model_is_hybrid(llm.model))


class _Probe:
    """A batch on the decode threads over an emptied KV cache, for a probe of this model; the cache
    is emptied again afterwards (the caller restores the live document's state)."""

    def __init__(self, llm: Any, size: int, name: str) -> None:
        self.llm, self.name, self.size, self.lib = llm, name, size, _lib()
        self.memory = self.lib.llama_get_memory(llm.ctx)

    def decode(self, feed: Sequence[int], at: int) -> None:
        """Evaluate `feed` at positions at.., dropping whatever the cache held from `at` on."""
        self.lib.llama_memory_seq_rm(self.memory, 0, at, -1)
        _fill(self.batch, feed, at)
        if self.lib.llama_decode(self.llm.ctx, self.batch) != 0:
            raise BackendError(f"llama_decode failed in the {self.name} probe at position {at}")

    def __enter__(self) -> _Probe:
        # Set up here, not in __init__: only an entered probe is undone by __exit__.
        self.batch = self.lib.llama_batch_init(self.size, 0, 1)
        self.batch_threads = _decode_threads(self.llm.ctx)
        self.lib.llama_memory_clear(self.memory, True)
        return self

    def __exit__(self, *exc: object) -> None:
        lib, ctx = self.lib, self.llm.ctx
        lib.llama_set_n_threads(ctx, lib.llama_n_threads(ctx), self.batch_threads)
        lib.llama_memory_clear(self.memory, True)
        self.llm.n_tokens = 0
        lib.llama_batch_free(self.batch)


def batch_invariant(llm: Any, tokens: Sequence[int], rows: int = 8) -> bool:
    """Whether positions evaluated inside one batch get bit-identical logits to the same positions
    evaluated one at a time: what makes lookup's output the same as plain decoding.

    Uses (and then clears) the KV cache. llama.cpp 0.3.36 on an AVX-512 CPU: SmolLM2 yes with flash
    attention, no without (rows after the first up to 1.3 apart); Gemma 3 270M no either way.
    """
    import numpy as np

    start = len(tokens) - rows
    if start < 1:
        raise BackendError(f"the batch-invariance probe needs more than {rows} tokens, got {len(tokens)}")
    with _Probe(llm, len(tokens), "batch-invariance") as probe:

        def logits(feed: Sequence[int], at: int) -> list[Any]:
            probe.decode(feed, at)
            return [np.ctypeslib.as_array(probe.lib.llama_get_logits_ith(llm.ctx, i), shape=(llm.n_vocab(),)).copy()
                    for i in range(len(feed))]

        logits(tokens[:start], 0)
        alone = [logits([token], start + i)[0] for i, token in enumerate(tokens[start:])]
        together = logits(tokens[start:], start)
        return all(np.array_equal(a, b) for a, b in zip(alone, together))


def draft_cost(llm: Any, tokens: Sequence[int], drafts: int = 8, rounds: int = 9) -> float:
    """What one drafted token adds to a decode step, as a share of that step: (t(1 + drafts) -
    t(1)) / (drafts * t(1)), medians of interleaved timings at the same position, on the decode
    threads as lookup runs its batches. Near 0 where a step is bound by reading the weights (a GPU);
    on a 2-core CPU 0.34-0.5 for Q4_1 weights and 0.16-0.24 for Q8_0 and Q4_K_M (bench/latency_lookup.py).
    Uses (and then clears) the KV cache.
    """
    import statistics
    import time

    at = len(tokens) - drafts - 1
    if at < 1 or drafts < 1:
        raise BackendError(f"the draft-cost probe needs more than {drafts + 1} tokens, got {len(tokens)}")
    with _Probe(llm, len(tokens), "draft-cost") as probe:

        def seconds(feed: Sequence[int]) -> float:
            started = time.perf_counter()
            probe.decode(feed, at)
            return time.perf_counter() - started

        probe.decode(tokens[:at], 0)
        one, many = [], []
        for _ in range(rounds):
            one.append(seconds(tokens[at: at + 1]))
            many.append(seconds(tokens[at: at + 1 + drafts]))
        step = statistics.median(one)
        return max(0.0, (statistics.median(many) - step) / (drafts * step))


def ceiling(accepted_share: float, cost: float) -> float:
    """The most lookup can speed decoding up when `accepted_share` of the tokens come from drafts
    and each drafted token costs `cost` of a step: every draft kept, nothing else taking time."""
    return 1.0 / (1.0 - accepted_share + cost * accepted_share)


def lookup_steps(llm: Any, tokens: list[int], opts: GenOptions, tally: LookupTally) -> Iterator[int]:
    """Token ids, as `llm.generate(tokens, ...)` would yield them, `opts.lookup` drafts at a time.

    The KV cache must hold all of `tokens` but the last (LocalBackend._prefill). Yields forever;
    the caller stops at max_tokens, a stop string or an end-of-generation token. The state
    (`llm.input_ids`, `llm.n_tokens`, KV cache) is consistent at every yield.
    """
    lib = _lib()
    ctx = llm.ctx
    sampler = _sampler(llm, opts)
    most = min(opts.lookup, MAX_DRAFT)
    batch = lib.llama_batch_init(most + 1, 0, 1)
    # A verify batch replaces one decode step, so it runs on the decode threads.
    batch_threads = _decode_threads(ctx)
    drafter = Drafter(tokens)
    length = DraftLength(most)
    produced = 0
    try:
        while True:
            room = min(opts.max_tokens - produced, llm.n_ctx() - llm.n_tokens) - 1
            drafts = drafter.draft(min(length.now, room))
            out = _verify(llm, batch, sampler, [drafter.tokens[-1], *drafts])
            length.update(len(drafts), len(out) - 1)
            tally.drafted += len(drafts)
            tally.accepted += len(out) - 1
            for token in out:
                drafter.append(token)
                produced += 1
                yield token
    finally:
        lib.llama_set_n_threads(ctx, lib.llama_n_threads(ctx), batch_threads)
        lib.llama_sampler_free(sampler)
        lib.llama_batch_free(batch)


def _verify(llm: Any, batch: Any, sampler: Any, feed: list[int]) -> list[int]:
    """Evaluate `feed` (last token, then drafts); the accepted drafts plus the next token."""
    lib = _lib()
    start = llm.n_tokens
    _fill(batch, feed, start)
    code = lib.llama_decode(llm.ctx, batch)
    if code != 0:
        raise BackendError(f"llama_decode returned {code} for {len(feed)} tokens at position {start} "
                           f"(context {llm.n_ctx()})")
    llm.input_ids[start: start + len(feed)] = feed
    out: list[int] = []
    vocab = lib.llama_model_get_vocab(llm.model)
    for i in range(len(feed)):
        token = lib.llama_sampler_sample(sampler, llm.ctx, i)
        out.append(token)
        if i + 1 == len(feed) or token != feed[i + 1] or lib.llama_vocab_is_eog(vocab, token):
            break
    keep = start + len(out)
    if keep < start + len(feed) and not lib.llama_memory_seq_rm(lib.llama_get_memory(llm.ctx), 0, keep, -1):
        raise BackendError(f"cannot remove rejected draft tokens from position {keep}")
    llm.n_tokens = keep
    return out


def _decode_threads(ctx: Any) -> int:
    """Run batches on the decode threads; returns the batch thread count to restore.

    llama.cpp gives any batch over one token n_threads_batch (llama-cpp-python: all cores): on a
    loaded 2-core machine that made a 2-token batch cost 4-300x a 1-token one in CPU time.
    """
    lib = _lib()
    batch_threads = lib.llama_n_threads_batch(ctx)
    lib.llama_set_n_threads(ctx, lib.llama_n_threads(ctx), lib.llama_n_threads(ctx))
    return batch_threads


def _fill(batch: Any, feed: Sequence[int], start: int) -> None:
    """Put `feed` at positions start.. of sequence 0, with logits for every position."""
    batch.n_tokens = len(feed)
    for i, token in enumerate(feed):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = True


def _sampler(llm: Any, opts: GenOptions) -> Any:
    """The chain `Llama._init_sampler` builds for these options, without a logits processor."""
    lib = _lib()
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    # The same arguments as llama-cpp-python's LlamaSampler.add_penalties.
    parts = [lib.llama_sampler_init_penalties(llm.n_vocab(), llm.last_n_tokens_size, opts.repeat_penalty, 0.0, 0.0)]
    if opts.temperature == 0.0:
        parts.append(lib.llama_sampler_init_greedy())
    elif opts.temperature < 0.0:
        parts.append(lib.llama_sampler_init_dist(opts.seed))
    else:
        parts += [
            lib.llama_sampler_init_top_k(TOP_K),
            lib.llama_sampler_init_typical(1.0, 1),
            lib.llama_sampler_init_top_p(opts.top_p, 1),
            lib.llama_sampler_init_min_p(MIN_P, 1),
            lib.llama_sampler_init_temp(opts.temperature),
            lib.llama_sampler_init_dist(opts.seed),
        ]
    for part in parts:
        lib.llama_sampler_chain_add(chain, part)
    return chain


def _lib():  # noqa: ANN202 - the low-level llama_cpp module
    import llama_cpp

    return llama_cpp
