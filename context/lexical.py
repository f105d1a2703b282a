"""Lexical similarity: Jaccard over identifier sets of fixed-size line windows."""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD = re.compile(r"[A-Za-z_]\w*")


def tokens(text: str) -> frozenset[str]:
    """The identifier set of a text."""
    return frozenset(_WORD.findall(text))


def windows(lines: list[str], size: int, step: int) -> list[tuple[int, int, frozenset[str]]]:
    """(first line, last line, identifiers) of each window; 0-based inclusive lines."""
    out: list[tuple[int, int, frozenset[str]]] = []
    start = 0
    while True:
        end = min(len(lines), start + size)
        out.append((start, end - 1, tokens("\n".join(lines[start:end]))))
        if end >= len(lines):
            return out
        start += step


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b|, 0 for two empty sets."""
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def best_windows(query: frozenset[str], wins: Iterable[tuple[int, int, frozenset[str]]], limit: int,
                 ) -> list[tuple[float, int, int]]:
    """The `limit` most similar windows as (score, first line, last line), best first."""
    scored = [(jaccard(query, toks), start, end) for start, end, toks in wins]
    scored = [s for s in scored if s[0] > 0]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return scored[:limit]
