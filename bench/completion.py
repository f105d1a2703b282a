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
        # No latency budget (issue 16 §2): every run sends the same full prompt, so the ratios
        # compare the pipeline with bare llama.cpp as before; `codeflow bench latency` measures it.
        "completion": {"maxTokens": 48, "backgroundTokens": 0, "temperature": 0.0, "latencyBudgetMs": 600000},
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


def _stamp_models(text: str, i: int) -> str:
    """Change the first context snippet (class User) so no KV state from earlier runs matches."""
    return text.replace('"""A registered user, identified by email."""', f'"""A registered user (run {i})."""')


async def server_runs(model: str, repeats: int, bare: Any) -> dict[str, Any]:
    """(b), (c) and (d) through the server. Each prompt the server built is replayed at once on
    the bare llama-cpp-python model (`bare`), so (a) and (b) run side by side, in the same order."""
    s = Session(model)
    await s.start()
    app, models = (SAMPLE / "app.py").read_text(), (SAMPLE / "models.py").read_text()
    uri, models_uri = s.open("app.py", app), s.open("models.py", models)
    await s.complete(uri, 0, 0)  # load the model and index the workspace
    line, col = CURSORS["app.py"]
    out: dict[str, list] = {k: [] for k in (
        "cold_first_line_s", "cold_ttft_s", "warm_ttft_s", "warm_first_line_s", "typed_through_s", "prompts")}
    for i in range(repeats):
        s.replace(models_uri, _stamp_models(models, i))
        # A new first line too: the completion cache must not serve the last run's answer.
        app = f"# run {i}\n" + (SAMPLE / "app.py").read_text()
        s.replace(uri, app)
        line = CURSORS["app.py"][0] + 1
        shown, elapsed, st = await s.complete(uri, line, col)
        out["cold_first_line_s"].append(elapsed)
        out["cold_ttft_s"].append(st["first_token_s"])
        out["prompts"].append(st["prompt"])
        bare.replay(st["prompt"], warm=False)
        # Warm: one typed character that the completion did not predict (no cache hit).
        char = "X" if not shown.startswith("X") else "Y"
        s.replace(uri, _type_at(app, line, col, char))
        _, elapsed, st = await s.complete(uri, line, col + 1)
        out["warm_first_line_s"].append(elapsed)
        out["warm_ttft_s"].append(st["first_token_s"])
        out["prompts"].append(st["prompt"])
        bare.replay(st["prompt"], warm=True)
        if len(shown) > 1:  # typing the predicted character is served from the cache
            s.replace(uri, app)
            shown, _, _ = await s.complete(uri, line, col)
            if len(shown) > 1:
                s.replace(uri, _type_at(app, line, col, shown[0]))
                _, elapsed, st = await s.complete(uri, line, col + 1)
                out["typed_through_s"].append(elapsed)
    out.update(await _alternate(s, (SAMPLE / "app.py").read_text(), models, repeats))
    await s.stop()
    return out


async def _alternate(s: Session, app: str, models: str, repeats: int) -> dict[str, Any]:
    """(d): two open files, requests alternating between them. The cursor moves by one column
    each time (no edit, so neither file changes the other's cross-file context, and the
    completion cache cannot answer): what is measured is the cost of switching KV state."""
    docs = {"app.py": app, "models.py": _stamp_models(models, 99)}
    uris = {name: (SAMPLE / name).as_uri() for name in docs}
    cold: list[float] = []
    for name, uri in uris.items():
        s.replace(uri, docs[name])
        line, col = CURSORS[name]
        cold.append((await s.complete(uri, line, col))[2]["first_token_s"])
    switch: list[float] = []
    for i in range(repeats * 2):
        name = ("app.py", "models.py")[i % 2]
        line, col = CURSORS[name]
        switch.append((await s.complete(uris[name], line, col - 1 + (i // 2) % 2))[2]["first_token_s"])
    return {"alternating_cold_ttft_s": cold, "alternating_ttft_s": switch}


class Bare:
    """(a): llama-cpp-python's own create_completion, one Llama, one sequence."""

    def __init__(self, model: str) -> None:
        from codeflow.quant.local import load_llama

        self.llm = load_llama(model_path=model, n_ctx=4096, verbose=False)
        self.results: dict[str, list[float]] = {
            k: [] for k in ("cold_first_line_s", "cold_ttft_s", "warm_ttft_s", "alternating_ttft_s")}

    def replay(self, prompt: str, warm: bool) -> None:
        """Run the server's prompt; the KV prefix it reuses is the same one the server had."""
        first, line = _timed(self.llm, self.llm.tokenize(prompt.encode(), add_bos=True, special=True))
        if warm:
            self.results["warm_ttft_s"].append(first)
        else:
            self.results["cold_ttft_s"].append(first)
            self.results["cold_first_line_s"].append(line)

    def alternate(self, a: str, b: str) -> None:
        """Two files' prompts in turn: one sequence re-evaluates each on every switch."""
        for prompt in (a, b) * 3:
            tokens = self.llm.tokenize(prompt.encode(), add_bos=True, special=True)
            self.results["alternating_ttft_s"].append(_timed(self.llm, tokens)[0])
        del self.results["alternating_ttft_s"][:2]


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
    runner = Bare(model)
    served = asyncio.run(server_runs(model, args.repeats, runner))
    runner.alternate(served["prompts"][0], served["prompts"][2])
    bare = runner.results
    n_prompt = len(runner.llm.tokenize(served["prompts"][0].encode(), special=True))
    ratios = summarise(bare, served, n_prompt)
    served["prompts"] = [p[-300:] for p in served["prompts"][:2]]  # the ends of two, to keep the JSON small
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
