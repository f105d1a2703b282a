"""The context view every editor shows and `codeflow context` prints: one renderer (issue 17 §5)."""

from __future__ import annotations

from codeflow.context.pack import Dropped, PackedContext, Snippet
from codeflow.lsp_server.assistant.context_view import markdown

PACKED = PackedContext(
    snippets=[
        Snippet(path="app/models.py", start_line=9, end_line=11, text="class User:\n    name: str\n",
                reason="imported symbol User", score=0.91234),
        Snippet(path="README", start_line=1, end_line=1, text="has ``` fences", reason="recent file", score=0.1),
    ],
    dropped=[Dropped(path="app/big.py", start_line=4, end_line=9, reason="over budget", score=0.05)],
    budget=1024,
    used=37,
)


def test_snippets_keep_their_1_based_lines_reasons_scores_and_language() -> None:
    md = markdown(PACKED, "app/views.py:12")
    assert md.startswith("# Codeflow context for app/views.py:12\n\n2 snippets, 37 of 1024 tokens used.\n")
    assert "## app/models.py:9-11\nimported symbol User (score 0.912)\n\n```python\nclass User:\n    name: str\n```\n" in md
    assert "- app/big.py:4-9 — over budget (score 0.050)" in md


def test_a_snippet_holding_a_fence_gets_a_longer_one() -> None:
    assert "````\nhas ``` fences\n````" in markdown(PACKED, "a.py:1")


def test_nothing_packed_still_says_so() -> None:
    md = markdown(PACKED.__class__(snippets=[], dropped=[], budget=0, used=0), "a.py:1")
    assert md == "# Codeflow context for a.py:1\n\n0 snippets, 0 of 0 tokens used.\n"
