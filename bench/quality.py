"""`codeflow bench quality`: is what reaches the screen worth showing (issue 14)?

Real files from packages the bench fetches itself (PyPI sdists, npm tarballs, Debian's Go source
packages; nothing is committed). At sampled cursor positions the rest of a line (as-you-type,
one line) or a whole statement (at a blank line: its block and closing lines too) is blanked; the
default model completes it once, from the full prompt (no latency budget),
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

Generating takes half an hour or more on a loaded CPU; post-processing takes seconds. `--dump FILE`
saves each case (file, position, original text, prefix and suffix) with the model's raw answers;
`--replay FILE` scores post-processing again from such a file without the model (the chat figures
are kept from the last full run), `--reuse FILE` keeps such a file's answers for the cases whose
input did not change, and `--previous REV` scores a commit's post-processing on the same answers
beside this tree's.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import json
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

import msgspec
import report
from recall import fetch

from codeflow.context.postprocess import (MAX_LOGICAL_LINES, decide_multiline, degenerate_phrase, logical_line,
                                          open_quote, postprocess, runaway_at)
from codeflow.context.syntaxcut import added_errors
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
DUMP_VERSION = 1
REPEAT = 3


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
    statement's line (the statement blanked whole, its block and closing lines too)."""
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
            i = _statement_start(lines, i)
            line, end = lines[i], _block_end(lines, i)
            indent = line[: len(line) - len(line.lstrip())]
            prefix = "\n".join(lines[:i] + [indent])
            want = "\n".join([line.lstrip()] + lines[i + 1:end])
            suffix = "\n" + "\n".join(lines[end:])
        out.append({"path": str(path), "language": language, "prefix": prefix, "suffix": suffix, "want": want})
    return out


# A line that goes on with the statement above it at its depth: a closing bracket, `elif`, `else`,
# `except`, `catch`, ... (blanking from it, or up to it, leaves half a statement in the file).
_GOES_ON = re.compile(r"[)\]}]|(elif|else|except|finally|catch|case|default)\b")


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip())


def _statement_start(lines: list[str], i: int) -> int:
    """The line that starts the statement line `i` belongs to at its depth (`try {` for
    `} catch (e) {}`, `if` for `elif`, `def f(` for `) -> int:`)."""
    while i > 0 and _GOES_ON.match(lines[i].lstrip()):
        i = next((k for k in range(i - 1, -1, -1) if lines[k].strip() and _depth(lines[k]) <= _depth(lines[i])), 0)
    return i


def _block_end(lines: list[str], i: int) -> int:
    """The end of the statement starting at line `i`: its block and the lines that go on with it
    (`)`, `}`, `else:`) included, however long, so that the file around the cursor is whole."""
    depth = _depth(lines[i])
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _depth(lines[j]) > depth
                              or _depth(lines[j]) == depth and _GOES_ON.match(lines[j].lstrip())):
        j += 1
    return j


# Running -----------------------------------------------------------------------------------------


def old_postprocess(rev: str) -> Callable[..., str]:
    """`postprocess` as it was at commit `rev` (loaded from git, not kept in the tree), with the
    syntax cut of that commit where it had one."""
    module = _module_at(rev, "context/postprocess.py")
    if "syntax_cut" in vars(module):
        module.syntax_cut = _module_at(rev, "context/syntaxcut.py").syntax_cut
    return module.postprocess


def _module_at(rev: str, path: str) -> Any:
    source = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parent).stdout
    name = Path(path).stem + "_" + rev
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    """One arm's verdict on one case. Valid: the file with the shown text has no parse error that
    it lacks with the original text (compared as error nodes, not counts: a count can stay equal
    while a new error replaces an old one). A one-line answer may span lines when it is one
    logical line (a call over several lines); more than that is a runaway."""
    lang = case["language"]
    added = added_errors(lang, case["prefix"], case["suffix"], shown, case["want"])
    lines = shown.strip("\n").split("\n")
    before, tail = case["prefix"].rsplit("\n", 1)[-1], case["suffix"].split("\n", 1)[0]
    first = logical_line(shown + "\n", before, tail, open_quote(case["prefix"], lang))
    # One logical line may be left open for the file's next lines to close (`f(` then its
    # arguments, as the original has them); more than one is a runaway.
    too_long = len(lines) > cap if multiline else (
        len(lines) > MAX_LOGICAL_LINES or (first is not None and first.rstrip() != shown.rstrip()))
    want = case["want"].strip()
    return {"shown": bool(shown.strip()), "valid": not added, "runaway": bool(shown) and (too_long or _repeats(lines)),
            "exact": shown.strip() == want,
            "similarity": difflib.SequenceMatcher(None, shown.strip(), want).ratio()}


def _repeats(lines: list[str]) -> bool:
    stripped = [ln.strip() for ln in lines if ln.strip()]
    return any(a == b for a, b in zip(stripped, stripped[1:])) or runaway_at("\n".join(lines)) is not None


def generate_raw(all_cases: list[dict[str, Any]], model: str, dump: Path | None,
                 reuse: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Each case with the model's raw answers (`free`, `led`) and whether a block was asked; saved
    to `dump` as it goes when given, so post-processing can be replayed without the model. A case
    of `reuse` (an earlier dump, same model) with the same file, prefix and suffix keeps its
    answers: the model would be given the same input."""
    from codeflow.quant.local import LocalBackend
    from codeflow.quant.models import resolve_model

    known = {(r["path"], r["prefix"], r["suffix"]): r for r in reuse}
    backend = LocalBackend(resolve_model(model), n_ctx=4096)
    # No latency budget (issue 16): the model answers the full prompt, whatever this machine's
    # prompt speed was during the run, so the answers depend on the cases alone.
    svc = CompletionService(lambda: backend, msgspec.convert({"completion": {"latencyBudgetMs": 600000}}, Settings))
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(all_cases):
        if (old := known.get((case["path"], case["prefix"], case["suffix"]))) is not None:
            free, led, multiline = old["free"], old["led"], old["multiline"]
        else:
            free, led, multiline = complete_raw(svc, backend, case, invoked=False)
        rows.append({**case, "position": _position(case["prefix"]), "free": free, "led": led,
                     "multiline": multiline})
        if i % 25 == 0:
            print(f"{i}/{len(all_cases)} completions", file=sys.stderr)
            if dump is not None:
                save_dump(dump, rows)
    backend.close()
    if dump is not None:
        save_dump(dump, rows)
    return rows


def _position(prefix: str) -> dict[str, int]:
    """The cursor as an editor gives it (0-based line and character)."""
    return {"line": prefix.count("\n"), "character": len(prefix.rsplit("\n", 1)[-1])}


def save_dump(dump: Path, rows: list[dict[str, Any]]) -> None:
    """Write the cases and raw answers so far (whole, through a temporary file)."""
    dump.parent.mkdir(parents=True, exist_ok=True)
    tmp = dump.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": DUMP_VERSION, "cases": rows}))
    tmp.replace(dump)


def load_dump(dump: Path) -> list[dict[str, Any]]:
    """The cases and raw answers saved by `--dump`."""
    data = json.loads(dump.read_text())
    if data.get("version") != DUMP_VERSION:
        raise SystemExit(f"{dump}: dump version {data.get('version')}, this bench reads {DUMP_VERSION}")
    return data["cases"]


def score(raw_rows: list[dict[str, Any]], before: Callable[..., str], cap: int, *, same_input: bool = False,
          keep: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Both arms' post-processing over every raw answer; per-arm, per-language aggregates. "Before"
    gets the free answer, or with `same_input` the constrained one and the line cap as "after"
    does (a commit of this issue). Each case's verdicts and shown text go to `keep` when given."""
    rows: list[dict[str, Any]] = []
    for case in raw_rows:
        arms = {}
        for name, fn, raw, extra in (("before", before, case["led" if same_input else "free"],
                                      {"max_lines": cap} if same_input else {}),
                                     ("after", postprocess, case["led"], {"max_lines": cap})):
            shown, cost = _timed(fn, raw, case, extra)
            arms[name] = {**judge(case, shown, case["multiline"], cap), "ms": cost, "text": shown}
        rows.append({"language": case["language"], "multiline": case["multiline"], **arms})
        if keep is not None:
            keep.append({"path": case["path"], "position": case.get("position"), **rows[-1]})
    return summarise(rows)


def _timed(fn: Callable[..., str], raw: str, case: dict[str, Any], extra: dict[str, Any]) -> tuple[str, float]:
    """The shown text and the median time of REPEAT runs in ms: on a loaded 2-core machine one run
    is as often a preemption's length as the work's."""
    costs = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        shown = fn(raw, case["prefix"], case["suffix"], multiline=case["multiline"], language=case["language"],
                   **extra)
        costs.append((time.perf_counter() - started) * 1000)
    return shown, sorted(costs)[len(costs) // 2]


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
    p.add_argument("--dump", type=Path, help="save each case with the model's raw answers here (JSON)")
    p.add_argument("--replay", type=Path, help="score the raw answers of a --dump file, without the model; "
                                                "the chat figures are kept from the last results")
    p.add_argument("--reuse", type=Path, help="keep the raw answers of this --dump file (same model) for the cases "
                   "whose file, prefix and suffix are unchanged; generate the rest")
    p.add_argument("--cases", type=Path, help="also write each case's shown text and verdicts here (JSON)")
    p.add_argument("--no-write", action="store_true", help="print the figures, leave results/ and README alone")
    p.add_argument("--previous", help="also score, on the same answers, the post-processing of this commit "
                                      "(one of this issue's) against this tree")
    args = p.parse_args(argv)
    keep: list[dict[str, Any]] | None = [] if args.cases else None
    result = replay(args, keep) if args.replay else measure(args, keep)
    if keep is not None:
        args.cases.write_text(json.dumps(keep, indent=1))
    print(markdown(result))
    if not args.no_write:
        print(f"wrote {report.write('quality', result, markdown(result))}")
    return 0


def measure(args: argparse.Namespace, keep: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Generate with the model (saving the answers to `--dump`), score both arms, explain."""
    rng, cache = random.Random(args.seed), Path(args.cache)
    py_files, all_cases = gather(args, rng, cache)
    raw = generate_raw(all_cases, args.model, args.dump, load_dump(args.reuse) if args.reuse else [])
    result = {"sources": {"pypi": list(PYTHON), "npm": list(NPM), "deb": list(GO_DEBS)}, **_arms(args, raw, keep)}
    if args.chat:
        result["chat"] = run_chat(python_functions(py_files, args.chat, rng), args.chat_model)
    return result


def replay(args: argparse.Namespace, keep: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Score the answers of a `--dump` file; the rest (sources, chat) is kept from the last run."""
    raw = load_dump(args.replay)
    return {**_last_result(), "answers": f"replayed from a --dump of {len(raw)} cases", **_arms(args, raw, keep)}


def _arms(args: argparse.Namespace, raw: list[dict[str, Any]], keep: list[dict[str, Any]] | None) -> dict[str, Any]:
    cap = Settings().completion.max_lines_automatic
    out: dict[str, Any] = {"before": args.before,
                           "completions": score(raw, old_postprocess(args.before), cap, keep=keep)}
    if args.previous:
        out["previous"] = {"rev": args.previous,
                           "completions": score(raw, old_postprocess(args.previous), cap, same_input=True)}
    return out


def gather(args: argparse.Namespace, rng: random.Random, cache: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """The Python files (for the chat functions too) and every language's cases."""
    py_files = [f for spec in PYTHON for f in files_of(fetch(spec, cache / "pypi"), "python")]
    js_roots = [r for r in (npm_source(s, cache / "npm") for s in NPM) if r is not None]
    go_roots = [r for r in (deb_source(d, cache / "deb") for d in GO_DEBS) if r is not None]
    js = [f for r in js_roots for f in files_of(r, "javascript")]
    ts = [f for r in js_roots for f in files_of(r, "typescript")]
    go = [f for r in go_roots for f in files_of(r, "go")]
    ts_cases = cases(ts, "typescript", args.js // 2, rng)
    return py_files, (cases(py_files, "python", args.python, rng) + ts_cases
                      + cases(js, "javascript", args.js - len(ts_cases), rng) + cases(go, "go", args.go, rng))


def _last_result() -> dict[str, Any]:
    """What the last full run wrote, less its machine and completions (a replay keeps the rest)."""
    path = report.BENCH / "results" / "quality.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    return {k: v for k, v in old.items() if k not in ("machine", "before", "completions", "previous", "answers")}


def markdown(result: dict[str, Any]) -> str:
    """The README section."""
    comp = result["completions"]
    rows = []
    for key in sorted(k for k in comp if k.endswith(".after")):
        group = key.removesuffix(".after")
        b, a = comp[f"{group}.before"], comp[key]
        rows.append((group, a["cases"], f"{b['shown']} → {a['shown']}",
                     f"{b['syntax_valid']:.3f} → **{a['syntax_valid']:.3f}**",
                     f"{b['runaway']:.3f} → **{a['runaway']:.3f}**",
                     f"{b['exact_match']:.3f} → {a['exact_match']:.3f}",
                     f"{b['edit_similarity']:.3f} → {a['edit_similarity']:.3f}",
                     f"{b['postprocess_p95_ms']:.2f} → {a['postprocess_p95_ms']:.2f}"))
    text = ("## Quality (issue 14)\n\n`codeflow bench quality`, default model, CPU: completions post-processed "
            f"as at {result['before']} with the model free (before) and by this tree, the half-typed word "
            "constraining the model's first tokens (after). Syntax valid: the file with the shown text has no "
            "tree-sitter error node that it lacks with the original text (nodes compared, not counted); a "
            "one-line answer may span lines when it is one logical line. Syntax valid is a share of the shown "
            "completions; exact match and edit similarity are over all cases (nothing shown scores 0). Cases "
            "blank the rest of a line, or a whole statement at a blank line (its block and the lines that go "
            "on with it: a closing bracket, `else`, `catch`); the model answers the full prompt (no latency "
            "budget). Post-processing time: the median of "
            f"{REPEAT} runs per case, then the p95 over cases (a single run on a loaded 2-core machine measures "
            "preemption as often as work).\n\n"
            + report.table(rows, ("cases", "n", "shown", "syntax valid", "runaway", "exact match", "edit similarity",
                                  "post-processing p95 ms")))
    if result.get("answers"):
        text += (f"\n\nThe model's answers were generated once (`--dump`) and scored again without the model "
                 f"(`--replay`): {result['answers']}.")
    previous = result.get("previous")
    if previous:
        text += (f"\n\nThe same answers post-processed as at {previous['rev']} (the previous round of this "
                 "work) and by this tree:\n\n" + _previous_table(previous))
    chat = result.get("chat")
    if chat:
        text += (f"\n\nExplanations of {chat['functions']} functions flagged degenerate: "
                 f"{chat['degenerate_before']:.2f} before, {chat['degenerate_after']:.2f} after.")
    return text


def _previous_table(previous: dict[str, Any]) -> str:
    comp, rows = previous["completions"], []
    for key in sorted(k for k in comp if k.endswith(".after")):
        group = key.removesuffix(".after")
        b, a = comp[f"{group}.before"], comp[key]
        rows.append((group, f"{b['shown']} → {a['shown']}",
                     f"{b['syntax_valid']:.3f} → **{a['syntax_valid']:.3f}**",
                     f"{b['exact_match']:.3f} → {a['exact_match']:.3f}",
                     f"{b['edit_similarity']:.3f} → {a['edit_similarity']:.3f}",
                     f"{b['postprocess_p95_ms']:.2f} → **{a['postprocess_p95_ms']:.2f}**"))
    return report.table(rows, ("cases", "shown", "syntax valid", "exact match", "edit similarity",
                               "post-processing p95 ms"))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
