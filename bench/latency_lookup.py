"""Decode speed of rewrites with prompt-lookup speculative decoding against plain decoding
(issue 16 §4, goal: 1.5x).

`python bench/latency_lookup.py [--model GGUF] [--quants Q8_0,Q4_K_M] [--repeats N] [--lookup N]`:
the chat model (SmolLM2-135M-Instruct by default, its own chat template) rewrites real functions
taken from this repository's source ("add a docstring and type hints", "simplify"), laid out as the
code actions lay out their prompts. Each prompt is generated once to warm its KV state, then plain
and lookup runs alternate on the same backend; a timed run is the decode alone (the prompt is
cached) and tokens/s counts the tokens generated. Writes bench/results/latency_lookup.json and a
section of bench/README.md; `measure()` is what bench/latency.py calls.

What lookup gains depends on what a drafted token costs in a verify batch (`draft_cost`): on a GPU
a decode step reads the weights once whatever the batch, on a CPU the batch's arithmetic counts,
and what it costs depends on the weight type: most for Q4_1, the shipped SmolLM2 file's.
`--quants` therefore also measures the same model converted with `codeflow quantize` (llama.cpp's
quantizer, into a temporary folder: nothing is downloaded), and every row gives the draft cost and
the ceiling it sets (`lookup.ceiling`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402  (bench/ is a folder of scripts, not a package)

from codeflow.context.prompt import PromptFormat, render_chat  # noqa: E402
from codeflow.quant.backend import CancelToken, GenOptions, Prompt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Rewrite decode speed: prompt lookup"
GOAL_RATIO = 1.5
DEFAULT_LOOKUP = 8
# The planner's first choice where it fits (presets.toml) and its most common one.
DEFAULT_QUANTS = ("Q8_0", "Q4_K_M")
MAX_TOKENS = 128
# (file, function): real code of 8-25 lines, so nothing is downloaded.
FUNCTIONS = [
    ("quant/local.py", "_stop_overlap"),
    ("quant/local.py", "fim_tokens"),
    ("context/prompt.py", "render_chat"),
]
INSTRUCTIONS = [
    "Add a concise docstring and type hints to this code. Do not change its behaviour.",
    "Simplify and modernise this code. Keep its behaviour exactly the same.",
]
# lsp_server's action prompt (SYSTEM there), restated: bench must not import the protocol layer.
SYSTEM = ("You are an expert python programmer. You rewrite the code the user shows, exactly as asked. "
          "Reply with one fenced code block holding the complete rewritten code, and nothing else.")


def function_source(path: str, name: str) -> str:
    """The source of top-level function `name` in the repository file `path`."""
    text = (ROOT / path).read_text()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node) + "\n"
    raise LookupError(f"no function {name} in {path}")


def rewrite_prompts(info: Any) -> list[tuple[str, tuple[str, ...]]]:
    """(prompt text, stop strings) for every function and instruction, in the model's template."""
    fmt = PromptFormat(kind="chat", chat_template=info.chat_template, bos=info.bos or "", eos=info.eos or "")
    prompts = []
    for path, name in FUNCTIONS:
        code = function_source(path, name)
        for instruction in INSTRUCTIONS:
            user = f"File: {path}:\n```python\n{code}```\n\n{instruction}"
            text = render_chat(fmt, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
            prompts.append((text + "```python\n", ("```",) + ((info.eos,) if info.eos else ())))
    return prompts


def _run(backend: Any, text: str, opts: GenOptions, key: str) -> tuple[float, int, str, int]:
    """Seconds, tokens, text and accepted drafts of one generation."""
    tokens, accepted = backend.tokens_generated, backend.lookup_tally.accepted
    started = time.perf_counter()
    out = "".join(backend.stream(Prompt(text=text, key=key), opts, CancelToken()))
    seconds = time.perf_counter() - started
    return seconds, backend.tokens_generated - tokens, out, backend.lookup_tally.accepted - accepted


def measure(model_path: str | None = None, repeats: int = 2, *, lookup: int = DEFAULT_LOOKUP,
            n_threads: int = 1, flash_attn: bool = False, lookup_check: bool = False) -> dict[str, Any]:
    """Median decode tokens/s, plain and with prompt lookup, interleaved on the same rewrites.

    `lookup_check=False` (LocalBackend's default) runs lookup even where it is not exact;
    `same_output_runs` then counts the answers that differ from plain decoding's.
    """
    from codeflow.quant.gguf_info import read_gguf
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.lookup import ceiling, draft_cost
    from codeflow.quant.models import default_chat_model_path

    path = model_path or str(default_chat_model_path())
    backend = LocalBackend(path, n_ctx=2048, n_threads=n_threads, flash_attn=flash_attn, lookup_check=lookup_check)
    plain_tps: list[float] = []
    lookup_tps: list[float] = []
    same, tokens, accepted = 0, 0, 0
    try:
        prompts = rewrite_prompts(backend.info)
        cost = draft_cost(backend.llama, backend.tokenize(prompts[0][0]))
        for i, (text, stop) in enumerate(prompts):
            plain = GenOptions(max_tokens=MAX_TOKENS, temperature=0.0, stop=stop)
            fast = GenOptions(max_tokens=MAX_TOKENS, temperature=0.0, stop=stop, lookup=lookup)
            _run(backend, text, plain, f"p{i}")  # prefill: the timed runs below decode only
            for r in range(repeats):
                order = [(plain, plain_tps), (fast, lookup_tps)]
                for opts, into in order if r % 2 == 0 else order[::-1]:
                    seconds, n, out, ok = _run(backend, text, opts, f"p{i}")
                    into.append(n / seconds)
                    if opts is plain:
                        want = out
                    else:
                        got, tokens, accepted = out, tokens + n, accepted + ok
                same += want == got
    finally:
        backend.close()
    plain_med, lookup_med = statistics.median(plain_tps), statistics.median(lookup_tps)
    share = accepted / max(tokens, 1)
    return {
        "model": Path(path).name, "weights": read_gguf(path).file_type, "prompts": len(prompts),
        "repeats": repeats, "lookup": lookup,
        "n_threads": n_threads, "flash_attn": flash_attn, "lookup_check": lookup_check, "max_tokens": MAX_TOKENS,
        "plain_tokens_per_s": round(plain_med, 2), "lookup_tokens_per_s": round(lookup_med, 2),
        "ratio": round(lookup_med / plain_med, 3), "goal_ratio": GOAL_RATIO,
        "accepted_per_token": round(share, 3), "draft_cost": round(cost, 3),
        "ceiling": round(ceiling(share, cost), 3), "same_output_runs": same, "runs": len(prompts) * repeats,
    }


def requantized(model_path: str | None, qtype: str, folder: Path) -> str:
    """The chat model converted to `qtype` by llama.cpp's quantizer, in `folder`."""
    from codeflow.quant.models import default_chat_model_path
    from codeflow.quant.quantize import quantize

    src = Path(model_path or default_chat_model_path())
    dst = folder / f"{src.stem}.{qtype}.gguf"
    quantize(src, dst, qtype, allow_requantize=True)
    return str(dst)


def _markdown(results: list[dict[str, Any]], load: float) -> str:
    rows = [(r["model"], r["weights"], "on" if r["flash_attn"] else "off",
             "exact" if r["same_output_runs"] == r["runs"] else "approximate", r["plain_tokens_per_s"],
             r["lookup_tokens_per_s"], f"**{r['ratio']}**", r["accepted_per_token"], r["draft_cost"], r["ceiling"],
             f"{r['same_output_runs']}/{r['runs']}")
            for r in results]
    first = results[0]
    return (f"{SECTION}\n\n`python bench/latency_lookup.py --flash-attn`: {first['prompts']} rewrite prompts "
            f"(functions from this repository), {first['repeats']} interleaved plain/lookup runs each, decode only, "
            f"greedy, {first['n_threads']} thread, lookup limit {first['lookup']}, medians; load average {load} "
            f"before the run. Goal: ratio >= {GOAL_RATIO}.\n\n"
            "A step drafts 1 token, then twice as many while all are kept (`DraftLength`). *Draft cost*: what one "
            "drafted token adds to a decode step, measured on the row's model (`lookup.draft_cost`); *ceiling*: "
            "the ratio if every draft were kept and nothing but decoding took time, 1 / (1 - a + cost * a) for "
            "the row's accepted share a. The shipped SmolLM2 file is Q4_1, whose verify batches cost the most "
            "on this CPU (Q4_1 is not among the weight types llama.cpp's tinyBLAS multiplies in batches); the "
            "other rows are the same model converted by `codeflow quantize` (Q8_0 is the planner's first "
            "choice, Q4_K_M its most common). Where a step is bound by reading the weights (a GPU) the draft "
            "cost is near 0.\n\n"
            "Without flash attention llama.cpp's batched logits differ from one-token logits by rounding: "
            "LocalBackend runs lookup there too (approximate, as llama.cpp's own speculative decoding), unless "
            "asked for exact output (`lookup_check`, the flash-attention row).\n\n"
            + report.table(rows, ("model", "weights", "flash attn", "output", "plain tok/s", "lookup tok/s", "ratio",
                                  "accepted drafts per token", "draft cost", "ceiling", "same output")))


def main(argv: list[str] | None = None) -> int:
    """Measure the chat model without flash attention (LocalBackend's default load; approximate
    lookup), with --flash-attn also with it (exact), then its --quants conversions; save the JSON
    and the README section."""
    parser = argparse.ArgumentParser(prog="codeflow bench latency_lookup")
    parser.add_argument("--model", default=None, help="chat GGUF (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--quants", default=",".join(DEFAULT_QUANTS),
                        help="also measure the model converted to these types (comma-separated; '' for none)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lookup", type=int, default=DEFAULT_LOOKUP)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flash-attn", action="store_true",
                        help="also measure with flash attention on (exact lookup; slower decode on a CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # Other work on this machine moves the ratio: it slows a one-token step more than a batch.
    load = round(os.getloadavg()[0], 2)
    kwargs = {"lookup": args.lookup, "n_threads": args.threads}
    results = [measure(args.model, args.repeats, flash_attn=fa, lookup_check=fa, **kwargs)
               for fa in ((False, True) if args.flash_attn else (False,))]
    with tempfile.TemporaryDirectory(prefix="codeflow-lookup-") as folder:
        for qtype in filter(None, args.quants.split(",")):
            results.append(measure(requantized(args.model, qtype.strip(), Path(folder)), args.repeats, **kwargs))
    if not args.no_write:
        report.write("latency_lookup", {"load_before": load, "results": results}, _markdown(results, load))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
