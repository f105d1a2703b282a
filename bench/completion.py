"""`codeflow bench completion`: bare llama-cpp-python against the same completion through the
LSP server (a real client over stdio), cold and warm time to first token, and two files
alternating. Everything runs side by side in one process run, on the bundled Flask sample.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

import report

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "flask_app"
# (file, 0-based line, column) of the cursors: the login route and a models.py method.
CURSORS = {"app.py": (27, 11), "models.py": (30, 15)}
SERVER = [sys.executable, "-m", "codeflow.lsp_server.cli", "serve", "--log-level", "warning"]


def _options(model: str) -> dict[str, Any]:
    return {
        "model": {"path": model, "nCtx": 4096},
        "completion": {"maxTokens": 48, "backgroundTokens": 0, "temperature": 0.0},
    }


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Session:
    """A pygls client driving `codeflow serve` over stdio."""

    def __init__(self, model: str) -> None:
        self.client = LanguageClient("codeflow-bench", "1")
        self.model = model
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}

    async def start(self) -> None:
        await self.client.start_io(*SERVER)
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            root_uri=SAMPLE.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=SAMPLE.as_uri(), name="flask_app")],
            initialization_options=_options(self.model),
        ))
        self.client.initialized(types.InitializedParams())

    def open(self, name: str, text: str) -> str:
        uri = (SAMPLE / name).as_uri()
        self.versions[uri], self.texts[uri] = 1, text
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))
        return uri

    def replace(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.texts[uri] = text
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def complete(self, uri: str, line: int, col: int) -> tuple[str, float, dict[str, Any]]:
        started = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=col),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
        elapsed = time.perf_counter() - started
        stats = await self.client.protocol.send_request_async("codeflow/stats", {})
        items = result.items if result else []
        stats = stats._asdict() if hasattr(stats, "_asdict") else dict(stats)
        return (items[0].insert_text if items else ""), elapsed, stats

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


def _type_at(text: str, line: int, col: int, char: str) -> str:
    lines = text.split("\n")
    lines[line] = lines[line][:col] + char + lines[line][col:]
    return "\n".join(lines)


def _stamp(text: str, i: int) -> str:
    """Change the first line so nothing (cache or KV) from an earlier run can be reused."""
    return f"# run {i}\n" + text


async def server_runs(model: str, repeats: int) -> dict[str, Any]:
    """(b), (c) and (d) through the server."""
    s = Session(model)
    await s.start()
    app = (SAMPLE / "app.py").read_text()
    uri = s.open("app.py", app)
    await s.complete(uri, 0, 0)  # load the model and index the workspace
    line, col = CURSORS["app.py"]
    cold, cold_ttft, warm_ttft, warm_total, typed_through = [], [], [], [], []
    for i in range(repeats):
        text = _stamp(app, i)
        s.replace(uri, text)
        shown, elapsed, st = await s.complete(uri, line + 1, col)
        cold.append(elapsed)
        cold_ttft.append(st["first_token_s"])
        # Warm: one typed character that the completion did not predict (no cache hit).
        char = "X" if not shown.startswith("X") else "Y"
        s.replace(uri, _type_at(text, line + 1, col, char))
        _, elapsed, st = await s.complete(uri, line + 1, col + 1)
        warm_total.append(elapsed)
        warm_ttft.append(st["first_token_s"])
        if len(shown) > 1:  # typing the predicted character is served from the cache
            s.replace(uri, _type_at(text, line + 1, col, shown[0]))
            _, elapsed, st = await s.complete(uri, line + 1, col + 1)
            typed_through.append(elapsed)
    alternating = await _alternate(s, app, repeats)
    await s.stop()
    return {
        "cold_first_line_s": cold, "cold_ttft_s": cold_ttft, "warm_ttft_s": warm_ttft,
        "warm_first_line_s": warm_total, "typed_through_s": typed_through, **alternating,
    }


async def _alternate(s: Session, app: str, repeats: int) -> dict[str, Any]:
    """(d): two open files, requests alternating between them, each after one typed character."""
    models = (SAMPLE / "models.py").read_text()
    docs = {"app.py": _stamp(app, 99), "models.py": _stamp(models, 99)}
    uris = {"app.py": (SAMPLE / "app.py").as_uri(), "models.py": s.open("models.py", docs["models.py"])}
    s.replace(uris["app.py"], docs["app.py"])
    cold: list[float] = []
    for name, uri in uris.items():
        line, col = CURSORS[name]
        cold.append((await s.complete(uri, line + 1, col))[2]["first_token_s"])
    switch: list[float] = []
    for i in range(repeats * 2):
        name = ("app.py", "models.py")[i % 2]
        line, col = CURSORS[name]
        docs[name] = _type_at(docs[name], line + 1, col + i // 2, "XYZW"[i % 4])
        s.replace(uris[name], docs[name])
        switch.append((await s.complete(uris[name], line + 1, col + i // 2 + 1))[2]["first_token_s"])
    return {"alternating_cold_ttft_s": cold, "alternating_ttft_s": switch}


def bare_runs(model: str, prompt: str, repeats: int) -> dict[str, Any]:
    """(a): llama-cpp-python's create_completion on the server's own prompt, and its warm paths."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=4096, verbose=False)
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    cold, cold_ttft, warm_ttft = [], [], []
    for _ in range(repeats):
        llm.reset()
        first, line = _timed(llm, tokens)
        cold_ttft.append(first)
        cold.append(line)
        warm_tokens = llm.tokenize((prompt + "X").encode(), add_bos=True, special=True)
        warm_ttft.append(_timed(llm, warm_tokens)[0])
    other = llm.tokenize(("# other file\n" + prompt).encode(), add_bos=True, special=True)
    switch = []
    for i in range(repeats):
        _timed(llm, other + tokens[-1:] * (i + 1))
        switch.append(_timed(llm, tokens + tokens[-1:] * i)[0])
    llm.close()
    return {"cold_first_line_s": cold, "cold_ttft_s": cold_ttft, "warm_ttft_s": warm_ttft, "alternating_ttft_s": switch}


def _timed(llm: Any, tokens: list[int]) -> tuple[float, float]:
    """Time to the first token and to the end of the first line (or 48 tokens)."""
    started = time.perf_counter()
    first = -1.0
    text = ""
    for chunk in llm.create_completion(tokens, max_tokens=48, temperature=0.0, stream=True):
        if first < 0:
            first = time.perf_counter() - started
        text += chunk["choices"][0]["text"]
        if "\n" in text:
            break
    return first, time.perf_counter() - started


def server_prompt(model: str) -> str:
    """The exact prompt the server builds at the app.py cursor (same settings, same context)."""
    from codeflow.lsp_server.cmd_complete import split
    from codeflow.lsp_server.completion import CompletionRequest, prompt_format
    from codeflow.lsp_server.runtime import Runtime
    from codeflow.lsp_server.settings import build

    settings, _ = build(SAMPLE, _options(model))
    runtime = Runtime(settings, SAMPLE)
    runtime.start_context([SAMPLE], watch=False)
    runtime.load()
    line, col = CURSORS["app.py"]
    text = _stamp((SAMPLE / "app.py").read_text(), 0)
    prefix, suffix = split(text, line + 2, col + 1, SAMPLE / "app.py")
    req = CompletionRequest(key="bench", path="app.py", language="python", prefix=prefix, suffix=suffix)
    backend = runtime.backend()
    built = runtime.completion._build(req, prompt_format(backend.info), backend)
    runtime.close()
    return built.text


def summarise(bare: dict[str, Any], served: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
    """The ratios the issue sets targets for."""
    cold = _median(served["cold_ttft_s"])
    return {
        "prompt_tokens": prompt_tokens,
        "server_over_bare_first_line": _median(served["cold_first_line_s"]) / _median(bare["cold_first_line_s"]),
        "warm_over_cold_ttft": _median(served["warm_ttft_s"]) / cold,
        "alternating_over_cold_ttft": _median(served["alternating_ttft_s"]) / cold,
        "bare_warm_over_cold_ttft": _median(bare["warm_ttft_s"]) / _median(bare["cold_ttft_s"]),
        "bare_alternating_over_cold_ttft": _median(bare["alternating_ttft_s"]) / _median(bare["cold_ttft_s"]),
        "typed_through_over_cold_first_line": _median(served["typed_through_s"]) / _median(served["cold_first_line_s"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Run all parts, write results/completion.json and the README section."""
    parser = argparse.ArgumentParser(prog="codeflow bench completion")
    parser.add_argument("--model", help="GGUF (default: the embedded Gemma 3 270M Q4_K_M)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from codeflow.quant.models import resolve_model

    model = str(resolve_model(args.model or ""))
    prompt = server_prompt(model)
    from llama_cpp import Llama

    n_prompt = len(Llama(model_path=model, n_ctx=512, verbose=False, vocab_only=True).tokenize(prompt.encode(), special=True))
    bare = bare_runs(model, prompt, args.repeats)
    served = asyncio.run(server_runs(model, args.repeats))
    ratios = summarise(bare, served, n_prompt)
    data = {"model": Path(model).name, "repeats": args.repeats, "ratios": ratios, "bare": bare, "server": served}
    rows = [(k, f"{v:.3f}" if isinstance(v, float) else v) for k, v in ratios.items()]
    md = "\n".join([
        "## Completion latency (`codeflow bench completion`)",
        f"Model `{Path(model).name}`, CPU only, medians of {args.repeats} runs; ratios measured side by side in one run.",
        "Targets: server/bare ≤ 1.05; warm TTFT ≤ 0.05 × cold; alternating files ≤ 0.1 × cold.",
        "",
        report.table(rows, ("measure", "value")),
    ])
    out = report.write("completion", data, md)
    print(md)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
