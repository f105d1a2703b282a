"""Cut a completion where it stops being code (issue 14): keep the longest prefix of the shown text
after which the buffer parses as well as it can, and never worse than with nothing inserted.

The README's demo showed `User.find_by_email(data["email"]):` after `user = `: the trailing `:`
makes the assignment invalid Python. Judging the completion in isolation cannot see that; judging
it in the buffer, against the buffer without it, can. Only a window of the buffer is parsed (the
lines around the cursor), so the cost stays flat in the file's size.
"""

from __future__ import annotations

import re

from codeflow.context.edits import error_count, grammar_name

WINDOW_BEFORE = 30
WINDOW_AFTER = 10
# Bounds on the candidates made, and parsed, when the whole text does not parse: a parse of the
# window costs 0.3-1 ms on a loaded 2-core machine, and post-processing has 5 ms (issue 14).
MAX_LINE_CUTS = 12
MAX_TOKEN_CUTS = 16
MAX_PARSES = 6
# Ends of tokens: an identifier, a number, a simple string, or one other non-space character.
_TOKEN = re.compile(r"[A-Za-z_$][\w$]*|\d[\w.]*|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\S")


def syntax_cut(text: str, prefix: str, suffix: str, language: str) -> str:
    """`text` cut to its longest prefix with the fewest parse errors in the buffer, never more
    than the buffer has without it; "" when no prefix qualifies. Unparseable languages pass."""
    if grammar_name(language) is None or not text.strip():
        return text
    head = "\n".join(prefix.split("\n")[-WINDOW_BEFORE:])
    tail = "\n".join(suffix.split("\n")[:WINDOW_AFTER])

    def errors(candidate: str) -> int:
        return error_count(language, head + candidate + tail) or 0

    full = errors(text)
    if full == 0:
        return text
    best, best_errors = "", errors("")
    for candidate in _candidates(text)[:MAX_PARSES]:
        found = errors(candidate)
        if found < best_errors or (found == best_errors and len(candidate) > len(best)):
            best, best_errors = candidate, found
        if found == 0:
            break
    if full <= best_errors:
        return text
    return best.rstrip() if best.strip() else ""


def _candidates(text: str) -> list[str]:
    """Shorter versions of `text`, longest first: whole lines, then tokens of the first line cut."""
    lines = text.split("\n")
    out: list[str] = []
    for n in range(len(lines) - 1, max(0, len(lines) - 1 - MAX_LINE_CUTS), -1):
        out.append("\n".join(lines[:n]))
    # Within each of the last lines tried, drop trailing tokens (`x = f():` -> `x = f()`).
    for n in range(len(lines) - 1, max(-1, len(lines) - 1 - 2), -1):
        kept = "\n".join(lines[:n]) + ("\n" if n else "")
        ends = [m.end() for m in _TOKEN.finditer(lines[n])][:-1]
        out += [kept + lines[n][:end] for end in reversed(ends[-MAX_TOKEN_CUTS:])]
    out.sort(key=len, reverse=True)
    return [c for c in out if c.strip()]
