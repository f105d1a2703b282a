"""Start `codeflow serve` as a real subprocess and drive it with pytest-lsp's client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER = [sys.executable, "-m", "codeflow.lsp_server.cli", "serve", "--log-level", "debug"]


def isolated_env(home: Path, keep_cache: bool = False) -> dict[str, str]:
    """The server's environment, with its own config (and, unless kept, cache) directories."""
    env = dict(os.environ)
    env["XDG_CONFIG_HOME"] = str(home / "config")
    if not keep_cache:
        env["XDG_CACHE_HOME"] = str(home / "cache")
    return env


@contextlib.asynccontextmanager
async def lsp_session(
    root: Path, options: dict[str, Any], home: Path, keep_cache: bool = False, log_file: Path | None = None,
    capabilities: types.ClientCapabilities | None = None,
) -> AsyncIterator[LanguageClient]:
    """An initialized client talking to a fresh server; shut down cleanly afterwards. With
    `log_file`, the server's debug log goes there (`--log-file`) instead of stderr."""
    command = SERVER + (["--log-file", str(log_file)] if log_file is not None else [])
    config = ClientServerConfig(server_command=command, server_env=isolated_env(home, keep_cache))
    client = await config.start()
    statuses: list[dict[str, Any]] = []
    client.statuses = statuses  # every `codeflow/status` the server sent, from the start
    client.feature("codeflow/status")(lambda params: statuses.append(_plain(params)))
    try:
        client.initialize_result = await client.initialize_session(
            types.InitializeParams(
                capabilities=capabilities or client_capabilities("visual-studio-code"),
                root_uri=root.as_uri(),
                workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                initialization_options=options,
            )
        )
        await wait_indexed(client)
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.shutdown_session()
        await client.stop()


def _plain(value: Any) -> Any:
    """pygls hands custom notifications' params over as named tuples: back to dicts."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def wait_for_status(client: LanguageClient, test: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The first `codeflow/status` for which `test(status)` holds, waiting for it to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for status in client.statuses:
            if test(status):
                return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"no matching codeflow/status; got {client.statuses}")


async def wait_indexed(client: LanguageClient, timeout: float = 15.0) -> bool:
    """Wait until the server's "Indexing workspace" progress has ended (the index is complete)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        reports = [r for values in client.progress_reports.values() for r in values]
        if any(isinstance(r, types.WorkDoneProgressEnd) and "indexed" in (r.message or "") for r in reports):
            return True
        await asyncio.sleep(0.05)
    return False


def open_doc(client: LanguageClient, path: Path, text: str | None = None, language: str = "python") -> str:
    """Send didOpen for a file (its disk text unless given); returns the URI."""
    uri = path.as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=1, text=path.read_text() if text is None else text
            )
        )
    )
    return uri


def inline_params(uri: str, line: int, character: int, invoked: bool = False) -> types.InlineCompletionParams:
    """Inline-completion params at a 0-based position."""
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind),
    )


async def stats(client: LanguageClient) -> dict[str, Any]:
    """The server's diagnostics of its last completion job (`previous`, `totals`: dicts too)."""
    # pygls hands results of custom methods back as named tuples.
    return _plain(await client.protocol.send_request_async("codeflow/stats", {}))


async def wait_for_stats(client: LanguageClient, test: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The first `codeflow/stats` answer for which `test(stats)` holds (a job's end has no
    notification of its own: ask until it shows)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        last = await stats(client)
        if test(last):
            return last
        if loop.time() > deadline:
            raise AssertionError(f"codeflow/stats never matched; last: {last}")
        await asyncio.sleep(0.05)


def idle(info: dict[str, Any]) -> bool:
    """No completion generates any more (the last job ended, however it ended)."""
    return info["totals"]["in_flight"] == 0


async def wait_for_message(client: LanguageClient, needle: str, timeout: float = 20.0, log: bool = False,
                           kind: types.MessageType | None = None) -> str:
    """The first `window/showMessage` (with `log`: `window/logMessage`) text containing `needle`,
    of type `kind` when given, waiting for it to arrive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for m in client.log_messages if log else client.messages:
            if needle in m.message and kind in (None, m.type):
                return m.message
        await asyncio.sleep(0.05)
    got = [m.message for m in (client.log_messages if log else client.messages)]
    raise AssertionError(f"no message containing {needle!r}; got {got}")
