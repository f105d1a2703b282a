"""Latency where users feel it (issue 16): jumps, accepts and keystrokes against cold requests,
prompt tokens reused per request, and automatic requests against the latency budget.

Runs real Python files (werkzeug's sdist under /tmp/cfq/pypi when present, else a package from
site-packages; nothing is committed) through CompletionService with the default model in process,
with the stable prompt layout (issue 16 §1) and the layout before it, side by side.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

SDISTS = Path("/tmp/cfq/pypi")
# The jump lands this many lines below the first cursor (issue 16: >= 20).
JUMP_LINES = 40


def _root() -> Path:
    found = sorted(SDISTS.glob("werkzeug-*/src/werkzeug")) if SDISTS.is_dir() else []
    if found:
        return found[-1]
    import msgspec

    return Path(msgspec.__file__).parent


def _files(root: Path, count: int) -> list[Path]:
    """The largest-but-not-huge Python files: 300 to 1,500 lines, deterministic."""
    sized = [(len(p.read_text(errors="replace").splitlines()), p) for p in sorted(root.rglob("*.py"))]
    return [p for n, p in sorted(sized, key=lambda x: (-x[0], str(x[1]))) if 300 <= n <= 1500][:count]


def _cursor(lines: list[str], near: int) -> int:
    """The first line at or after `near` that is indented code (not a comment, docstring or blank)."""
    for i in range(near, len(lines)):
        s = lines[i].strip()
        if lines[i].startswith("    ") and len(s) > 8 and not s.startswith(("#", '"', "'", ")", "]", "}")):
            return i
    return near


def _split(text: str, line: int) -> tuple[str, str]:
    """Prefix and suffix with the cursor after the indentation of `line`."""
    lines = text.split("\n")
    indent = len(lines[line]) - len(lines[line].lstrip())
    cut = sum(len(s) + 1 for s in lines[:line]) + indent
    return text[:cut], text[cut:]


class Run:
    """One layout's service over one model, with per-request measurements."""

    def __init__(self, engine: Any, backend: Any, root: Path, stable: bool, budget_ms: int) -> None:
        from codeflow.lsp_server.assistant.completion import CompletionService
        from codeflow.lsp_server.assistant.runtime import EngineContext
        from codeflow.lsp_server.settings import Settings, apply_layer

        # The default context budgets; short answers keep the run within minutes on 2 cores.
        settings, errors = apply_layer(Settings(), {
            "completion": {"latencyBudgetMs": budget_ms, "backgroundTokens": 0, "maxTokens": 24}})
        assert not errors, errors
        self.backend = backend
        self.svc = CompletionService(lambda: backend, settings, EngineContext(lambda: engine, root, stable), stable)
        self.root = root
        self._sent: dict[str, list[int]] = {}

    def ask(self, key: str, path: Path, prefix: str, suffix: str, cold: bool = False) -> dict[str, Any]:
        """One automatic request; its first-line time, and the prompt tokens the backend reused."""
        from codeflow.lsp_server.assistant.completion import CompletionRequest
        from codeflow.quant.backend import CancelToken
        from codeflow.quant.local import _common_prefix

        if cold:
            self.backend.llama.reset()  # nothing cached: the whole prompt is evaluated
            self._sent.pop(key, None)
        req = CompletionRequest(key=key, path=str(path.relative_to(self.root)), language="python",
                                prefix=prefix, suffix=suffix)
        started = time.perf_counter()
        shown = self.svc.complete(req, CancelToken())
        wall = time.perf_counter() - started
        self.svc.wait_idle(60)
        out: dict[str, Any] = {"first_line_s": wall, "from_cache": shown.from_cache, "text": shown.text}
        if not shown.from_cache:
            tokens = self.backend.tokenize(self.svc.last.prompt)
            # LocalBackend keeps each document's KV state and reuses its common prefix with the new
            # prompt; the previous prompt of this key is what that state holds.
            reused = _common_prefix(self._sent.get(key, []), tokens)
            self._sent[key] = tokens
            out.update(prompt_tokens=len(tokens), reused_tokens=reused, ttft_s=self.svc.last.first_token_s,
                       allowance=self.svc.last.allowance)
        return out


def _scenario(run: Run, path: Path, tag: str) -> dict[str, dict[str, Any]]:
    """Cold, typed character, accepted line, jump >= JUMP_LINES, and cold at the jump's target."""
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    a = _cursor(lines, len(lines) // 3)
    b = _cursor(lines, a + JUMP_LINES)
    key = f"{tag}:{path}"
    pre, suf = _split(text, a)
    got = {"cold": run.ask(key, path, pre, suf, cold=True)}
    typed = lines[a].strip()[:1]
    got["typed"] = run.ask(key, path, pre + typed, suf[1:] if suf.startswith(typed) else suf)
    shown = got["cold"]["text"]
    indent = lines[a][: len(lines[a]) - len(lines[a].lstrip())]
    got["accepted"] = run.ask(key, path, pre + shown + "\n" + indent, suf)
    jpre, jsuf = _split(text, b)
    got["jump"] = run.ask(key, path, jpre, jsuf)
    got["cold_jump"] = run.ask(key + "#cold", path, jpre, jsuf, cold=True)
    got["jump_lines"] = {"value": b - a}
    # What the user would have typed there: the rest of the original line (same cases, both layouts).
    for kind, line in (("cold", a), ("jump", b), ("cold_jump", b)):
        got[kind].update(_match(got[kind]["text"], lines[line].strip()))
    return got


def _match(shown: str, want: str) -> dict[str, Any]:
    """Exact match and edit similarity of the shown first line against the original."""
    first = shown.split("\n", 1)[0].strip()
    return {"exact": first == want, "similarity": round(difflib.SequenceMatcher(None, first, want).ratio(), 4)}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _summary(per_file: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    def ratio(kind: str, base: str, measure: str = "first_line_s") -> float | None:
        return _median([_time(f[kind], measure) / _time(f[base], measure) for f in per_file])

    reused = [f[k]["reused_tokens"] / f[k]["prompt_tokens"] for f in per_file
              for k in ("typed", "accepted", "jump") if "reused_tokens" in f[k]]
    return {
        "jump_over_cold": ratio("jump", "cold_jump"),
        "accepted_over_cold": ratio("accepted", "cold"),
        "typed_over_cold": ratio("typed", "cold"),
        # The measure: the first token's time (what a streaming client could show first).
        "jump_ttft_over_cold": ratio("jump", "cold_jump", "ttft_s"),
        "accepted_ttft_over_cold": ratio("accepted", "cold", "ttft_s"),
        "typed_ttft_over_cold": ratio("typed", "cold", "ttft_s"),
        "cold_first_line_s": _median([f["cold"]["first_line_s"] for f in per_file]),
        "jump_reused_tokens": _median([f["jump"].get("reused_tokens", 0) for f in per_file]),
        "jump_prompt_tokens": _median([f["jump"].get("prompt_tokens", 0) for f in per_file]),
        "reused_share_after_first": _median(reused),
        "exact_match": _mean([float(f[k]["exact"]) for f in per_file for k in ("cold", "jump", "cold_jump")]),
        "edit_similarity": _mean([f[k]["similarity"] for f in per_file for k in ("cold", "jump", "cold_jump")]),
    }


def _time(got: dict[str, Any], measure: str) -> float:
    """A request's `measure`; an answer from the cache has no first token: its first line's time."""
    return got.get(measure, got["first_line_s"])


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _budget(engine: Any, backend: Any, root: Path, files: list[Path]) -> dict[str, Any]:
    """Automatic requests with the default budget (0: auto): cold, then jumps, per file."""
    from codeflow.lsp_server.assistant import budget as latency

    run = Run(engine, backend, root, stable=True, budget_ms=0)
    target = latency.budget_ms(0, backend.info.device) / 1000
    times: list[float] = []
    for path in files:
        lines = path.read_text(errors="replace").split("\n")
        at = _cursor(lines, len(lines) // 4)
        for i, jump in enumerate((0, JUMP_LINES, 2 * JUMP_LINES)):
            line = _cursor(lines, at + jump)
            pre, suf = _split("\n".join(lines), line)
            times.append(run.ask(f"budget:{path}", path, pre, suf, cold=i == 0)["first_line_s"])
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"budget_s": target, "first_line_median_s": _median(times), "first_line_p95_s": round(p95, 4),
            "p95_over_budget": round(p95 / target, 3), "requests": len(times),
            "prefill_tps_measured": round(run.svc.prefill.tps or 0.0, 1)}


def _others(index_files: int) -> dict[str, Any]:
    """The other issue 16 benchmarks' figures, when their modules are there."""
    out: dict[str, Any] = {}
    for name, kwargs in (("latency_lookup", {"repeats": 1}), ("latency_index", {"files": index_files})):
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:
            out[name] = {"skipped": f"not importable: {exc}"}
            continue
        try:
            out[name] = mod.measure(**kwargs) if hasattr(mod, "measure") else {"skipped": "no measure()"}
        except Exception as exc:  # another engineer's bench must not cost this one its figures
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the layouts side by side, the budget pass and the other parts; write the results."""
    ap = argparse.ArgumentParser(prog="codeflow bench latency", description=__doc__)
    ap.add_argument("--files", type=int, default=5, help="real files to run (medians over them)")
    ap.add_argument("--index-files", type=int, default=2000, help="tree size for latency_index.measure")
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads (1: OpenMP spinning on a loaded machine stalled prefill)")
    ap.add_argument("--no-others", action="store_true", help="skip latency_lookup and latency_index")
    args = ap.parse_args(argv)
    from codeflow.context.engine import ContextEngine, EngineConfig
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import resolve_model

    root = _root()
    files = _files(root, args.files)
    engine = ContextEngine([root], EngineConfig(use_cache=False))
    engine.index_now()
    backend = LocalBackend(resolve_model(""), n_ctx=4096, n_threads=args.threads)
    started = time.perf_counter()
    try:
        layouts = {}
        for name, stable in (("stable", True), ("before", False)):
            # A large budget: both layouts get full prompts, so only the layout differs.
            run = Run(engine, backend, root, stable, budget_ms=600_000)
            per_file = [_scenario(run, p, name) for p in files]
            layouts[name] = {"summary": _summary(per_file), "per_file": {
                str(p.relative_to(root)): {k: {m: v for m, v in d.items() if m != "text"} for k, d in f.items()}
                for p, f in zip(files, per_file)}}
        budget = _budget(engine, backend, root, files)
    finally:
        backend.close()
        engine.stop()
    others = {} if args.no_others else _others(args.index_files)
    data = {"root": str(root), "files": [str(p.relative_to(root)) for p in files], "layouts": layouts,
            "budget": budget, "others": others, "seconds": round(time.perf_counter() - started, 1)}
    print(_markdown(data))
    report.write("latency", data, _markdown(data))
    return 0


def _markdown(data: dict[str, Any]) -> str:
    new, old = data["layouts"]["stable"]["summary"], data["layouts"]["before"]["summary"]
    goals = {"jump_ttft_over_cold": "≤ 0.35", "accepted_ttft_over_cold": "≤ 0.1", "typed_ttft_over_cold": "≤ 0.05",
             "jump_over_cold": "(first line)", "accepted_over_cold": "(first line)", "typed_over_cold": "(first line)",
             "exact_match": "not lower", "edit_similarity": "not lower"}
    rows = [(k, goals.get(k, ""), new[k], old[k]) for k in new]
    b = data["budget"]
    rows.append(("automatic first line p95 / budget", "≤ 1.0", b["p95_over_budget"], ""))
    names = ", ".join(data["files"])
    return (f"## Latency (issue 16)\n\n`codeflow bench latency`: {len(data['files'])} files of `{data['root']}` "
            f"({names}) through CompletionService with the default model in process; medians over the files. "
            "Ratios over a cold request at the same place: `*_ttft_*` of the first token's time (the issue's "
            "TTFT), the others of the first line's (what `complete()` took, stricter: it adds the line's "
            "decode); "
            "reused tokens are the common token prefix with the document's previous prompt, which "
            "LocalBackend's per-document KV state keeps. The budget pass runs automatic requests with "
            f"`completion.latencyBudgetMs` 0 (auto: {b['budget_s']} s here), {b['requests']} requests, "
            f"measured prefill {b['prefill_tps_measured']} tokens/s.\n\n"
            + report.table(rows, ("measure", "goal", "stable layout", "layout before"))
            + f"\n\nOther parts: `{sorted(data['others'])}` (see results/latency.json). "
            f"Run took {data['seconds']} s.\n")


if __name__ == "__main__":
    raise SystemExit(main())
