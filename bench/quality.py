"""`codeflow bench quality`: is what reaches the screen worth showing (issue 14)?

Real files from packages the bench fetches itself (PyPI sdists, npm tarballs, Debian's Go source
packages; nothing is committed). At sampled cursor positions the rest of a line (as-you-type,
one line) or a whole block (at a blank line) is blanked; the default model completes it once,
through the post-processing of an earlier commit (`--before`) and of this tree, side by side.
"After" also constrains the model's first tokens to the word the user was typing; "before" lets
it choose freely (one more generation where a word was half typed):

- syntax validity: share of shown completions after which the file parses no worse than with
  the original text (goal >= 0.98);
- runaway rate: share of automatic completions longer than the line cap or holding a repeated
  line (goal 0);
- exact match and edit similarity of the shown text against the original (must not drop);
- cost: the post-processing time per completion (p95, goal <= 5 ms);
- chat: share of explanations of 50 functions the degeneration detector flags, without and with
  this tree's repetition penalty and early stop.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import report
from recall import fetch

from codeflow.context.edits import error_count
from codeflow.context.postprocess import decide_multiline, degenerate_phrase, postprocess, runaway_at
from codeflow.lsp_server.assistant.completion import CompletionRequest, CompletionService, continuation
from codeflow.lsp_server.settings import Settings
from codeflow.quant.backend import CancelToken, GenOptions, Prompt

PYTHON = ("flask==3.0.3", "werkzeug==3.0.3", "marshmallow==3.21.3", "arrow==1.3.0")
NPM = ("lodash-es@4.17.21", "rxjs@7.8.1")  # rxjs ships its TypeScript sources
GO_DEBS = ("golang-github-google-uuid-dev", "golang-github-pkg-errors-dev", "golang-github-spf13-pflag-dev")
EXTENSIONS = {"python": (".py",), "javascript": (".js", ".mjs"), "typescript": (".ts",), "go": (".go",)}
SKIP = re.compile(r"(^|/)(tests?|docs?|examples?|node_modules|vendor|dist|__tests__)(/|$)|\.d\.ts$|_test\.go$")
MAX_FILE_CHARS = 60_000
MAX_LINE_TOKENS = 48
MAX_BLOCK_TOKENS = 128


# Sources -----------------------------------------------------------------------------------------


def npm_source(spec: str, dest: Path) -> Path | None:
    """An npm package's files (its tarball unpacked), or None when npm cannot fetch it."""
    out = dest / spec.replace("@", "_").replace("/", "_")
    if out.is_dir():
        return out
    out.mkdir(parents=True)
    done = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(out)],
                          capture_output=True, text=True, timeout=300)
    tarballs = list(out.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        print(f"skipping {spec}: npm pack failed: {done.stderr.strip()[:200]}", file=sys.stderr)
        return None
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(out, filter="data")
    return out


def deb_source(package: str, dest: Path) -> Path | None:
    """A Debian package's files (Go sources live in its -dev packages), or None."""
    out = dest / package
    if out.is_dir():
        return out
    out.mkdir(parents=True)
    done = subprocess.run(["apt-get", "download", package], cwd=out, capture_output=True, text=True, timeout=300)
    debs = list(out.glob("*.deb"))
    if done.returncode != 0 or not debs:
        print(f"skipping {package}: apt-get download failed: {done.stderr.strip()[:200]}", file=sys.stderr)
        return None
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(out / "files")], check=True)
    return out / "files"


def files_of(root: Path, language: str) -> list[Path]:
    """Source files of one language under a root, tests, docs and vendored code left out."""
    return sorted(p for p in root.rglob("*") if p.suffix in EXTENSIONS[language] and p.is_file()
                  and not SKIP.search(p.relative_to(root).as_posix()) and p.stat().st_size < MAX_FILE_CHARS)


# Cases -------------------------------------------------------------------------------------------


def cases(files: list[Path], language: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """`n` cursor positions: half mid-line (the rest of the line blanked), half at the start of a
    block's line (the block blanked up to its dedent)."""
    out: list[dict[str, Any]] = []
    for _ in range(n * 20):
        if len(out) >= n or not files:
            break
        path = rng.choice(files)
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
        i = rng.randrange(len(lines))
        line = lines[i]
        if len(line.strip()) < 8 or line.lstrip().startswith(("#", "//", "*", '"""')):
            continue
        if len(out) % 2 == 0:
            indent = len(line) - len(line.lstrip())
            cut = rng.randrange(indent + 2, len(line))
            prefix = "\n".join(lines[:i] + [line[:cut]])
            want, suffix = line[cut:], "\n" + "\n".join(lines[i + 1:])
        else:
            end = _block_end(lines, i)
            indent = line[: len(line) - len(line.lstrip())]
            prefix = "\n".join(lines[:i] + [indent])
            want = "\n".join([line.lstrip()] + lines[i + 1:end])
            suffix = "\n" + "\n".join(lines[end:])
        out.append({"path": str(path), "language": language, "prefix": prefix, "suffix": suffix, "want": want})
    return out


def _block_end(lines: list[str], i: int) -> int:
    """The first line after `i` indented no deeper than line `i` (the block's end)."""
    depth = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1
    while j < len(lines) and j - i < 12 and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > depth):
        j += 1
    return j


# Running -----------------------------------------------------------------------------------------


def old_postprocess(rev: str) -> Callable[..., str]:
    """`postprocess` as it was at commit `rev` (loaded from git, not kept in the tree)."""
    source = subprocess.run(["git", "show", f"{rev}:context/postprocess.py"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parent).stdout
    path = Path(tempfile.mkdtemp()) / "postprocess_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("postprocess_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.postprocess


def complete_raw(svc: CompletionService, backend: Any, case: dict[str, Any],
                 invoked: bool) -> tuple[str, str, bool]:
    """The model's raw continuation past what the user typed, free (as before this issue) and
    with the typed word constraining its first tokens (after), and whether a block was asked."""
    req = CompletionRequest(key=case["path"], path=Path(case["path"]).name, language=case["language"],
                            prefix=case["prefix"], suffix=case["suffix"], invoked=invoked)
    multiline = decide_multiline(req.prefix, req.suffix, req.language, invoked)
    base, built, _ = svc.prompt_for(req, backend, multiline)
    typed = req.prefix[len(base):]
    # A one-line answer gets a short cap (its logical line may span lines: a call over several),
    # a block the automatic token cap, enough to run away in.
    opts = GenOptions(max_tokens=MAX_BLOCK_TOKENS if multiline else MAX_LINE_TOKENS, stop=built.stop)
    texts = []
    for lead in ("", typed) if typed.strip() else ("",):
        prompt = Prompt(text=built.text, kind=built.kind, key="bench", lead=lead)
        ok, text = continuation("".join(backend.stream(prompt, opts, CancelToken())), typed)
        texts.append(text if ok else "")
    return texts[0], texts[-1], multiline


def judge(case: dict[str, Any], shown: str, multiline: bool, cap: int) -> dict[str, Any]:
    """One arm's verdict on one case."""
    lang = case["language"]
    original = error_count(lang, case["prefix"] + case["want"] + case["suffix"]) or 0
    after = error_count(lang, case["prefix"] + shown + case["suffix"]) or 0
    lines = shown.strip("\n").split("\n")
    runaway = bool(shown) and (len(lines) > (cap if multiline else 1) or _repeats(lines))
    want = case["want"].strip()
    return {"shown": bool(shown.strip()), "valid": after <= original, "runaway": runaway,
            "exact": shown.strip() == want,
            "similarity": difflib.SequenceMatcher(None, shown.strip(), want).ratio()}


def _repeats(lines: list[str]) -> bool:
    stripped = [ln.strip() for ln in lines if ln.strip()]
    return any(a == b for a, b in zip(stripped, stripped[1:])) or runaway_at("\n".join(lines)) is not None


def run_completions(all_cases: list[dict[str, Any]], before: Callable[..., str], model: str) -> dict[str, Any]:
    """Both arms over every case; returns per-arm, per-language aggregates."""
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import resolve_model

    backend = LocalBackend(resolve_model(model), n_ctx=4096)
    settings = Settings()
    svc = CompletionService(lambda: backend, settings)
    cap = settings.completion.max_lines_automatic
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(all_cases):
        free, led, multiline = complete_raw(svc, backend, case, invoked=False)
        arms = {}
        for name, fn, raw, extra in (("before", before, free, {}), ("after", postprocess, led, {"max_lines": cap})):
            started = time.perf_counter()
            shown = fn(raw, case["prefix"], case["suffix"], multiline=multiline, language=case["language"], **extra)
            cost = (time.perf_counter() - started) * 1000
            arms[name] = {**judge(case, shown, multiline, cap), "ms": cost}
        rows.append({"language": case["language"], "multiline": multiline, **arms})
        if i % 25 == 0:
            print(f"{i}/{len(all_cases)} completions", file=sys.stderr)
    backend.close()
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Shares and percentiles per arm, overall and per language."""
    out: dict[str, Any] = {}
    groups = {"all": rows, **{lang: [r for r in rows if r["language"] == lang] for lang in
                              sorted({r["language"] for r in rows})}}
    for group, members in groups.items():
        for arm in ("before", "after"):
            got = [r[arm] for r in members]
            shown = [g for g in got if g["shown"]]
            ms = sorted(g["ms"] for g in got)
            out[f"{group}.{arm}"] = {
                "cases": len(got), "shown": len(shown),
                "syntax_valid": _share(shown, "valid"), "runaway": _share(shown, "runaway"),
                "exact_match": _share(got, "exact"),
                "edit_similarity": sum(g["similarity"] for g in got) / max(1, len(got)),
                "postprocess_p95_ms": ms[int(0.95 * (len(ms) - 1))] if ms else 0.0,
            }
    return out


def _share(items: list[dict[str, Any]], key: str) -> float:
    return sum(1 for i in items if i[key]) / max(1, len(items))


def run_chat(functions: list[tuple[str, str]], chat_model: str) -> dict[str, Any]:
    """Explanations of functions without and with this tree's penalty and early stop."""
    from codeflow.lsp_server.assistant import explain, instruct
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import resolve_chat_model

    backend = LocalBackend(resolve_chat_model(chat_model), n_ctx=4096)
    flagged = {"before": 0, "after": 0}
    for name, code in functions:
        facts = explain.Facts(name=name, kind="function", signature="", docstring="", language="python",
                              path="bench.py", line=0, text=code)
        built = explain.explain_prompt(backend, facts)
        plain = "".join(backend.stream(instruct.backend_prompt(built), GenOptions(max_tokens=256, stop=built.stop),
                                       CancelToken()))
        flagged["before"] += _degenerate_anywhere(plain)
        try:
            instruct.generate(backend, built, GenOptions(max_tokens=256, stop=built.stop,
                                                         repeat_penalty=explain.PROSE_REPEAT_PENALTY),
                              CancelToken(), lambda t: None, instruct.Stats(), prose=True)
        except Exception:  # DegenerateAnswerError: flagged and stopped
            flagged["after"] += 1
    backend.close()
    n = max(1, len(functions))
    return {"functions": len(functions), "degenerate_before": flagged["before"] / n,
            "degenerate_after": flagged["after"] / n}


def _degenerate_anywhere(text: str) -> bool:
    return any(degenerate_phrase(text[:end]) for end in range(40, len(text) + 1, 20))


def python_functions(files: list[Path], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """`n` top-level Python functions of 3 to 40 lines."""
    found: list[tuple[str, str]] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in re.finditer(r"^def (\w+)\(.*?(?=^\S|\Z)", text, re.M | re.S):
            if 3 <= m.group(0).count("\n") <= 40:
                found.append((m.group(1), m.group(0)))
    rng.shuffle(found)
    return found[:n]


def main(argv: list[str]) -> int:
    """Fetch sources, run both arms, write bench/results/quality.json and the README section."""
    p = argparse.ArgumentParser(prog="codeflow bench quality")
    p.add_argument("--before", default="061bddc", help="the commit whose post-processing is the baseline")
    p.add_argument("--python", type=int, default=200)
    p.add_argument("--js", type=int, default=50, help="JavaScript and TypeScript cases together")
    p.add_argument("--go", type=int, default=50)
    p.add_argument("--chat", type=int, default=50, help="functions to explain (0: skip)")
    p.add_argument("--model", default="", help="model.path (default: the embedded model)")
    p.add_argument("--chat-model", default="default")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "codeflow-bench-quality"))
    p.add_argument("--seed", type=int, default=14)
    args = p.parse_args(argv)
    rng, cache = random.Random(args.seed), Path(args.cache)
    py_files = [f for spec in PYTHON for f in files_of(fetch(spec, cache / "pypi"), "python")]
    js_roots = [r for r in (npm_source(s, cache / "npm") for s in NPM) if r is not None]
    go_roots = [r for r in (deb_source(d, cache / "deb") for d in GO_DEBS) if r is not None]
    js = [f for r in js_roots for f in files_of(r, "javascript")]
    ts = [f for r in js_roots for f in files_of(r, "typescript")]
    go = [f for r in go_roots for f in files_of(r, "go")]
    ts_cases = cases(ts, "typescript", args.js // 2, rng)
    all_cases = (cases(py_files, "python", args.python, rng) + ts_cases
                 + cases(js, "javascript", args.js - len(ts_cases), rng) + cases(go, "go", args.go, rng))
    result: dict[str, Any] = {"sources": {"pypi": list(PYTHON), "npm": list(NPM), "deb": list(GO_DEBS)},
                              "before": args.before,
                              "completions": run_completions(all_cases, old_postprocess(args.before), args.model)}
    if args.chat:
        result["chat"] = run_chat(python_functions(py_files, args.chat, rng), args.chat_model)
    out = report.write("quality", result, markdown(result))
    print(markdown(result))
    print(f"wrote {out}")
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The README section."""
    comp = result["completions"]
    rows = []
    for key in sorted(k for k in comp if k.endswith(".after")):
        group = key.removesuffix(".after")
        b, a = comp[f"{group}.before"], comp[key]
        rows.append((group, a["cases"], f"{b['syntax_valid']:.3f} → **{a['syntax_valid']:.3f}**",
                     f"{b['runaway']:.3f} → **{a['runaway']:.3f}**",
                     f"{b['exact_match']:.3f} → {a['exact_match']:.3f}",
                     f"{b['edit_similarity']:.3f} → {a['edit_similarity']:.3f}",
                     f"{b['postprocess_p95_ms']:.2f} → {a['postprocess_p95_ms']:.2f}"))
    text = ("## Quality (issue 14)\n\n`codeflow bench quality`, default model, CPU: completions post-processed "
            f"as at {result['before']} with the model free (before) and by this tree, the half-typed word "
            "constraining the model's first tokens (after).\n\n"
            + report.table(rows, ("cases", "n", "syntax valid", "runaway", "exact match", "edit similarity",
                                  "post-processing p95 ms")))
    chat = result.get("chat")
    if chat:
        text += (f"\n\nExplanations of {chat['functions']} functions flagged degenerate: "
                 f"{chat['degenerate_before']:.2f} before, {chat['degenerate_after']:.2f} after.")
    return text


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
