"""The real default model (Gemma 3 270M Q4_K_M from PyPI) end to end on the Flask sample."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lsprotocol import types

from lsp_session import inline_params, lsp_session, open_doc, stats


def test_cli_completes_the_sample(sample_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "codeflow.lsp_server.cli", "complete", f"{sample_dir / 'app.py'}:28:12",
         "--workspace", str(sample_dir), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["prompt_kind"] == "prefix"  # a base model without FIM tokens or chat template
    assert "gemma" in out["model"].lower()
    assert out["text"].strip() and out["tokens"] > 0


def test_cli_streams_plain_text(sample_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "codeflow.lsp_server.cli", "complete", f"{sample_dir / 'app.py'}:28:12",
         "--workspace", str(sample_dir), "--max-tokens", "24"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


async def test_server_completes_the_sample_with_cross_file_context(sample_dir: Path, tmp_path: Path) -> None:
    async with lsp_session(sample_dir, {}, tmp_path, keep_cache=True) as client:
        uri = open_doc(client, sample_dir / "app.py")
        # Asked for (Ctrl+Space): the whole prompt, whatever this machine's latency budget allows
        # an automatic request (issue 16 §2; tests/test_latency_layout.py covers that one).
        result = await client.text_document_inline_completion_async(inline_params(uri, 27, 11, invoked=True))
        assert isinstance(result, types.InlineCompletionList)
        info = await stats(client)
        assert info["prompt_kind"] == "prefix" and info["tokens"] > 0
        # The model sees models.py: the definition of User is in the prompt, before app.py.
        prompt = info["prompt"]
        assert "class User" in prompt
        assert prompt.index("class User") < prompt.index("def login")
        assert result.items and result.items[0].insert_text.strip()
