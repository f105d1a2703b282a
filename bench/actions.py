"""`codeflow bench actions`: hover's fast path against a plain hover round trip on the same server,
and the time to the first `$/progress` text of a code action against the model's time to first
token. A real client drives `codeflow serve` over stdio on the bundled Flask sample, with the
configured chat model (SmolLM2-135M-Instruct by default).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from lsprotocol import types
from pygls.lsp.client import LanguageClient

import report
from codeflow.lsp_server.assistant.instruct import list_actions

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "flask_app"
SERVER = [sys.executable, "-m", "codeflow.lsp_server.cli", "serve", "--log-level", "warning"]
# models.py: (0-based line, column) of the method names, and a blank line for the plain hover.
METHODS = [(19, 9), (23, 9), (28, 9), (32, 9)]
BLANK = (18, 0)
ACTIONS = [("document", 19), ("simplify", 32), ("document", 23)]


class Session:
    """A pygls client that records progress and accepts `workspace/applyEdit`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.client = LanguageClient("codeflow-bench", "1")
        self.options = options
        self.first_text: dict[str, float] = {}
        self._register()

    def _register(self) -> None:
        @self.client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @self.client.feature(types.PROGRESS)
        def progress(params: types.ProgressParams) -> None:
            value = params.value if isinstance(params.value, dict) else {}
            if value.get("kind") == "report" and value.get("message"):
                self.first_text.setdefault(str(params.token), time.perf_counter())

        @self.client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            return types.ApplyWorkspaceEditResult(applied=True)

    async def start(self) -> str:
        await self.client.start_io(*SERVER)
        # pygls pipes the server's stderr; unread, a full pipe would block the server's logging.
        self._drain = asyncio.create_task(_drain(self.client._server.stderr))
        caps = types.ClientCapabilities(
            window=types.WindowClientCapabilities(work_done_progress=True),
            workspace=types.WorkspaceClientCapabilities(apply_edit=True),
        )
        await self.client.initialize_async(types.InitializeParams(
            capabilities=caps, root_uri=SAMPLE.as_uri(), initialization_options=self.options,
            workspace_folders=[types.WorkspaceFolder(uri=SAMPLE.as_uri(), name="flask_app")],
        ))
        self.client.initialized(types.InitializedParams())
        uri = (SAMPLE / "models.py").as_uri()
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python", version=1, text=(SAMPLE / "models.py").read_text())))
        return uri

    async def hover(self, uri: str, line: int, col: int) -> tuple[float, str]:
        started = time.perf_counter()
        result = await self.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=col)))
        return time.perf_counter() - started, (result.contents.value if result else "")

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args)))

    async def stats(self) -> Any:
        return await self.client.protocol.send_request_async("codeflow/instructStats", {})

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


async def _drain(stream: asyncio.StreamReader | None) -> None:
    while stream is not None and await stream.readline():
        pass


async def hovers(s: Session, uri: str, repeats: int) -> dict[str, Any]:
    """Plain round trips, first (uncached) fast-path hovers, then cached ones."""
    plain = [(await s.hover(uri, *BLANK))[0] for _ in range(repeats)]
    first = [(await s.hover(uri, *pos))[0] for pos in METHODS]
    for pos in METHODS:  # one at a time: a hover elsewhere would cancel a background job
        deadline = time.monotonic() + 600
        while "**Explanation**" not in (await s.hover(uri, *pos))[1] and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
    cached = [(await s.hover(uri, *METHODS[i % len(METHODS)]))[0] for i in range(repeats)]
    plain += [(await s.hover(uri, *BLANK))[0] for _ in range(repeats)]
    explain = (await s.stats()).explain
    return {"plain_s": plain, "fast_uncached_s": first, "fast_cached_s": cached,
            "explain_first_token_s": explain.first_token_s, "explain_total_s": explain.total_s}


async def actions(s: Session, uri: str) -> dict[str, Any]:
    """Each action through `codeflow.runAction`: client time to the first progress text vs model TTFT."""
    listed, first_text, ttft, total = [], [], [], []
    for action, line in ACTIONS:
        started = time.perf_counter()
        offered = await s.client.text_document_code_action_async(types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            range=types.Range(start=types.Position(line=line + 1, character=8),
                              end=types.Position(line=line + 1, character=8)),
            context=types.CodeActionContext(diagnostics=[])))
        listed.append(time.perf_counter() - started)
        assert offered, "the server listed no actions"
        # The same listing in-process gives the action's data (the client's union decoding of
        # CodeAction | Command drops it).
        text = (SAMPLE / "models.py").read_text()
        offers = list_actions(uri, 1, text, "python", (line + 1, 8), (line + 1, 8), [])
        data = msgspec.to_builtins(next(o.data for o in offers if o.data.action == action))
        before = set(s.first_text)
        started = time.perf_counter()
        await s.command("codeflow.runAction", data)
        total.append(time.perf_counter() - started)
        new = [t for k, t in s.first_text.items() if k not in before]
        stats = (await s.stats()).action
        if new and stats.first_token_s > 0:
            first_text.append(min(new) - started)
            ttft.append(stats.first_token_s)
    return {"list_s": listed, "first_progress_text_s": first_text, "model_ttft_s": ttft, "action_total_s": total}


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarise(h: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    """The two ratios the issue asks for, and the medians behind them."""
    shares = [f / t for f, t in zip(a["first_progress_text_s"], a["model_ttft_s"])]
    return {
        "plain_hover_ms": _median(h["plain_s"]) * 1000,
        "fast_hover_cached_ms": _median(h["fast_cached_s"]) * 1000,
        "fast_hover_uncached_ms": _median(h["fast_uncached_s"]) * 1000,
        "fast_cached_over_plain": _median(h["fast_cached_s"]) / _median(h["plain_s"]),
        "fast_uncached_over_plain": _median(h["fast_uncached_s"]) / _median(h["plain_s"]),
        "action_list_ms": _median(a["list_s"]) * 1000,
        "first_progress_text_s": _median(a["first_progress_text_s"]),
        "model_ttft_s": _median(a["model_ttft_s"]),
        "first_progress_over_model_ttft": _median(shares),
    }


def markdown(summary: dict[str, Any], chat: str, repeats: int) -> str:
    rows = [
        ("plain `textDocument/hover` round trip (no symbol)", f"{summary['plain_hover_ms']:.2f} ms"),
        ("hover fast path, explanation cached", f"{summary['fast_hover_cached_ms']:.2f} ms"),
        ("hover fast path, explanation not yet written", f"{summary['fast_hover_uncached_ms']:.2f} ms"),
        ("**fast path / plain round trip** (cached; uncached)",
         f"**{summary['fast_cached_over_plain']:.2f}×**; {summary['fast_uncached_over_plain']:.2f}×"),
        ("`textDocument/codeAction` listing", f"{summary['action_list_ms']:.2f} ms"),
        ("first `$/progress` text of `codeflow.runAction`", f"{summary['first_progress_text_s']:.2f} s"),
        ("chat model's time to first token (same prompt, in the server)", f"{summary['model_ttft_s']:.2f} s"),
        ("**first progress text / model TTFT**", f"**{summary['first_progress_over_model_ttft']:.3f}**"),
    ]
    return (
        "## Code actions and hovers (`codeflow bench actions`)\n\n"
        f"Chat model: `{chat}`, {repeats} hovers per median, {len(ACTIONS)} actions, Flask sample `models.py`, "
        "CPU only. A ratio of 1.0 for the progress would mean the partial text reaches the editor the "
        "moment the model produces its first token.\n\n" + report.table(rows, ("measure", "median"))
    )


async def run(chat: str, repeats: int) -> dict[str, Any]:
    options = {"model": {"chatPath": chat}, "hover": {"waitMs": 0, "explainMaxTokens": 48}}
    s = Session(options)
    uri = await s.start()
    await s.command("codeflow.explainFunction", {"uri": uri, "position": {"line": 0, "character": 0}})
    await asyncio.sleep(2.0)  # let the index and the completion model settle before timing
    try:
        h = await hovers(s, uri, repeats)
        a = await actions(s, uri)
    finally:
        await s.stop()
    return {"hover": h, "actions": a}


def main(argv: list[str]) -> int:
    """Run the benchmark and write bench/results/actions.json and its README section."""
    p = argparse.ArgumentParser(prog="codeflow bench actions")
    p.add_argument("--chat-model", default="default", help="model.chatPath (default: SmolLM2-135M-Instruct)")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    raw = asyncio.run(run(args.chat_model, args.repeats))
    summary = summarise(raw["hover"], raw["actions"])
    out = report.write("actions", {"chat_model": args.chat_model, "summary": summary, **raw},
                       markdown(summary, args.chat_model, args.repeats))
    for key, value in summary.items():
        print(f"{key}: {value:.4g}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
