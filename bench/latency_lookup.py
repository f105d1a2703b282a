"""Decode speed of rewrites with prompt-lookup speculative decoding against plain decoding
(issue 16 §4, goal: 1.5x).

`python bench/latency_lookup.py [--model GGUF] [--repeats N] [--lookup N]`: the chat model
(SmolLM2-135M-Instruct by default, its own chat template) rewrites real functions taken from this
repository's source ("add a docstring and type hints", "simplify"), laid out as the code actions
lay out their prompts. Each prompt is generated once to warm its KV state, then plain and lookup
runs alternate on the same backend; a timed run is the decode alone (the prompt is cached) and
tokens/s counts the tokens generated. Writes bench/results/latency_lookup.json and a section of
bench/README.md; `measure()` is what bench/latency.py calls.
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
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
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import default_chat_model_path

    path = model_path or str(default_chat_model_path())
    backend = LocalBackend(path, n_ctx=2048, n_threads=n_threads, flash_attn=flash_attn, lookup_check=lookup_check)
    plain_tps: list[float] = []
    lookup_tps: list[float] = []
    same, tokens, accepted = 0, 0, 0
    try:
        prompts = rewrite_prompts(backend.info)
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
    return {
        "model": Path(path).name, "prompts": len(prompts), "repeats": repeats, "lookup": lookup,
        "n_threads": n_threads, "flash_attn": flash_attn, "lookup_check": lookup_check, "max_tokens": MAX_TOKENS,
        "plain_tokens_per_s": round(plain_med, 2), "lookup_tokens_per_s": round(lookup_med, 2),
        "ratio": round(lookup_med / plain_med, 3), "goal_ratio": GOAL_RATIO,
        "accepted_per_token": round(accepted / max(tokens, 1), 3),
        "same_output_runs": same, "runs": len(prompts) * repeats,
    }


def _markdown(results: list[dict[str, Any]]) -> str:
    rows = [(r["model"], "on" if r["flash_attn"] else "off", "exact" if r["same_output_runs"] == r["runs"]
             else "approximate", r["lookup"], r["plain_tokens_per_s"],
             r["lookup_tokens_per_s"], r["ratio"], r["accepted_per_token"], f"{r['same_output_runs']}/{r['runs']}")
            for r in results]
    first = results[0]
    return (f"{SECTION}\n\n`python bench/latency_lookup.py`: {first['prompts']} rewrite prompts (functions from "
            f"this repository), {first['repeats']} interleaved plain/lookup runs each, decode only, greedy, "
            f"{first['n_threads']} thread, medians. Goal: ratio >= {GOAL_RATIO}.\n\n"
            + "Without flash attention llama.cpp's batched logits differ from one-token logits by rounding: "
            "LocalBackend runs lookup there too (approximate, as llama.cpp's own speculative decoding), unless "
            "asked for exact output (`lookup_check`, the flash-attention row). A step drafts 1 token, then "
            "twice as many while all are kept, up to the lookup limit (`DraftLength`).\n\n"
            + report.table(rows, ("model", "flash attn", "output", "lookup", "plain tok/s", "lookup tok/s", "ratio",
                                  "accepted drafts per token", "same output")))


def main(argv: list[str] | None = None) -> int:
    """Measure lookup without flash attention (LocalBackend's default load; approximate there) and,
    with --flash-attn, with it (exact); then save the JSON and the README section."""
    parser = argparse.ArgumentParser(prog="codeflow bench latency_lookup")
    parser.add_argument("--model", default=None, help="chat GGUF (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lookup", type=int, default=DEFAULT_LOOKUP)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flash-attn", action="store_true",
                        help="also measure with flash attention on (exact lookup; slower decode on a CPU)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = [measure(args.model, args.repeats, lookup=args.lookup, n_threads=args.threads, flash_attn=fa,
                       lookup_check=fa) for fa in ((False, True) if args.flash_attn else (False,))]
    if not args.no_write:
        report.write("latency_lookup", {"results": results}, _markdown(results))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
