"""The token-budget packer and the prompt rendering of packed snippets."""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec

from codeflow.context.rank import Candidate

# Characters per token of source code when no model tokenizer is at hand. `bench/context.py`
# measured 3.68 with the default model's (Gemma 3) tokenizer on 80 stdlib files; 3.5 errs low,
# so an estimated pack over-counts by about 5% and stays under budget (docs/context.md).
CHARS_PER_TOKEN = 3.5
MAX_DROPPED = 64


class Snippet(msgspec.Struct, kw_only=True, frozen=True):
    """One packed snippet: workspace-relative path, 1-based inclusive lines, why and how strongly."""

    path: str
    start_line: int
    end_line: int
    text: str
    reason: str
    score: float


class Dropped(msgspec.Struct, kw_only=True, frozen=True):
    """A candidate the packer left out, and why."""

    path: str
    start_line: int
    end_line: int
    reason: str
    score: float


class PackedContext(msgspec.Struct, kw_only=True, frozen=True):
    """The snippets that fit, in priority order, what was dropped, the budget and tokens used."""

    snippets: list[Snippet]
    dropped: list[Dropped]
    budget: int
    used: int


def estimate_tokens(text: str) -> int:
    """A calibrated token estimate for when no model tokenizer is at hand."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def render_snippet(path: str, text: str, comment: str, file_sep: str | None) -> str:
    """One snippet as prompt text: a path header, then the text."""
    if file_sep is not None:
        return f"{file_sep}{path}\n{text}\n"
    return f"{comment} path: {path}\n{text}\n"


def _inside(c: Candidate, s: Snippet, rel: str) -> bool:
    return rel == s.path and s.start_line <= c.start_line + 1 and c.end_line + 1 <= s.end_line


def _overlaps(c: Candidate, s: Snippet, rel: str) -> bool:
    return rel == s.path and c.start_line + 1 <= s.end_line and s.start_line <= c.end_line + 1


def _why_skip(c: Candidate, rel: str, chosen: list[tuple[Snippet, str]], prompt: tuple[str, int, int],
              ) -> str | None:
    if rel == prompt[0] and c.start_line <= prompt[2] and prompt[1] <= c.end_line:
        return "already in the prompt's prefix or suffix"
    for s, kind in chosen:
        if kind == "definition" and _inside(c, s, rel):
            return f"already inside {s.path}:{s.start_line}-{s.end_line}"
        if (c.kind == "window" or kind == "window") and _overlaps(c, s, rel):
            return f"overlaps {s.path}:{s.start_line}-{s.end_line}"
    return None


def pack(cands: list[Candidate], budget: int, rel: Callable[[str], str], comment: str,
         file_sep: str | None, count: Callable[[str], int], prompt: tuple[str, int, int],
         ) -> PackedContext:
    """Fit candidates into `budget` tokens, best first; headers count. `prompt` is the current
    file's (relative path, first line, last line) already shown to the model, 0-based."""
    order = sorted(cands, key=lambda c: (-round(c.score, 6), c.path, c.start_line, c.end_line))
    chosen: list[tuple[Snippet, str]] = []
    dropped: list[Dropped] = []
    used = 0
    for c in order:
        path = rel(c.path)
        why = _why_skip(c, path, chosen, prompt)
        snippet = Snippet(path=path, start_line=c.start_line + 1, end_line=c.end_line + 1, text=c.text,
                          reason=c.reason, score=round(c.score, 4))
        if why is None:
            cost = count(render_snippet(path, c.text, comment, file_sep))
            if used + cost <= budget:
                chosen.append((snippet, c.kind))
                used += cost
                continue
            short = count(render_snippet(path, c.short, comment, file_sep)) if c.short else budget + 1
            if used + short <= budget:  # the signatures still tell the model what exists
                chosen.append((msgspec.structs.replace(snippet, text=c.short), "outline"))
                used += short
                continue
            why = f"over budget: needs {cost} tokens, {budget - used} left"
        if len(dropped) < MAX_DROPPED:
            dropped.append(Dropped(path=path, start_line=snippet.start_line, end_line=snippet.end_line,
                                   reason=f"{why} ({c.reason})", score=snippet.score))
    return PackedContext(snippets=[s for s, _ in chosen], dropped=dropped, budget=budget, used=used)


def render(packed: PackedContext, comment: str, file_sep: str | None) -> str:
    """The packed snippets as prompt text, in priority order (stable for the same snippets)."""
    return "".join(render_snippet(s.path, s.text, comment, file_sep) for s in packed.snippets)
