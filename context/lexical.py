"""Lexical similarity: Jaccard over identifier sets of fixed-size line windows."""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z_]\w*")


def tokens(text: str) -> frozenset[str]:
    """The identifier set of a text."""
    return frozenset(_WORD.findall(text))


def windows(lines: list[str], size: int, step: int) -> list[tuple[int, int, frozenset[str]]]:
    """(first line, last line, identifiers) of each window of `size` lines, every `step` lines;
    0-based inclusive. Each step-sized block is tokenized once and windows are unions of blocks."""
    per = max(1, size // step)
    blocks = [tokens("\n".join(lines[i:i + step])) for i in range(0, max(1, len(lines)), step)]
    out: list[tuple[int, int, frozenset[str]]] = []
    for k in range(len(blocks)):
        group = blocks[k:k + per]
        start = k * step
        out.append((start, min(len(lines), start + size) - 1, frozenset().union(*group)))
        if k + per >= len(blocks):
            break
    return out


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|, 0 for two empty sets."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def best_windows(query: frozenset[str], wins: Iterable[tuple[int, int, frozenset[str]]], limit: int,
                 ) -> list[tuple[float, int, int]]:
    """The `limit` most similar windows as (score, first line, last line), best first."""
    if not query:
        return []
    size = len(query)
    scored = []
    for start, end, toks in wins:
        # jaccard() inlined: this loop runs over every window of several files per keystroke.
        inter = len(query & toks)
        if inter:
            scored.append((inter / (size + len(toks) - inter), start, end))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return scored[:limit]
