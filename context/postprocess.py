"""Turn raw model output into the text an editor shows: one line or a block, in scope, without
repetition, and without repeating what already follows the cursor.
"""

from __future__ import annotations

import functools
import re

from codeflow.context.scope import opens_block
from codeflow.context.syntaxcut import syntax_cut, unfinished

OPENERS = {"(": ")", "[": "]", "{": "}"}
# Lines of the suffix that its checks read: a completion is compared with what follows it, not
# with the whole rest of the file (split once per streamed line).
NEAR_LINES = 64
# The start of an answer that `loops` reads (about 3 µs a character): an answer's own caps keep it
# shorter; a longer one has long shown whatever it was going to.
LOOP_CHARS = 2000
CLOSERS = {v: k for k, v in OPENERS.items()}
_FENCE = re.compile(r"^\s*```[\w+-]*\s*$")
# Terminal controls and undecodable bytes never belong in source text (tabs and newlines do).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd]")


def decide_multiline(prefix: str, suffix: str, language: str, invoked: bool) -> bool:
    """Whether to show a block rather than the rest of one line."""
    line_before = prefix.rsplit("\n", 1)[-1]
    line_after = suffix.split("\n", 1)[0]
    if line_before.strip() or line_after.strip(" \t)]};,"):
        return False
    if invoked:
        return True
    # A blank line: a block when the syntax opens one here (an empty body, a new definition).
    return opens_block(prefix, suffix, language) or not suffix.strip()


def postprocess(raw: str, prefix: str, suffix: str, *, multiline: bool, language: str = "",
                max_lines: int = 0) -> str:
    """The text to show for `raw`, or "" when nothing useful is left; a block keeps at most
    `max_lines` lines when that is set (as-you-type requests: no ghost text fills the screen)."""
    text = _strip_fences(_CONTROL.sub("", raw))
    looped = loops(text[:LOOP_CHARS], prefix.rsplit("\n", 1)[-1])
    if not multiline:
        line_before, tail = prefix.rsplit("\n", 1)[-1], suffix.split("\n", 1)[0]
        text = logical_line(text, line_before, tail, open_quote(prefix, language)) or text.split("\n", 1)[0]
        first = text.split("\n", 1)[0]
        if first != text and _continued_below(line_before, suffix) and not unfinished(first, prefix, suffix,
                                                                                         language):
            # The file already goes on with this line's block or arguments below the cursor, and
            # the line alone fits it (`if err != nil {` over the body that is there).
            text = first
    else:
        text = _keep_scope(text, prefix)
        if max_lines > 0:
            text = "\n".join(text.split("\n")[:max_lines])
    text = _cut_repetition(text, prefix)
    text = _trim_suffix_overlap(text, prefix, suffix, multiline)
    text = syntax_cut(text.rstrip(), prefix, suffix, language) if language else text.rstrip()
    if looped and text.strip() and unfinished(text, prefix, suffix, language):
        # The model degenerated before it finished what the cursor is in: what it had written by
        # then (`from .bl` + `ueprints`, the import list never closed) is not worth showing.
        return ""
    return text if text.strip() else ""


def _continued_below(line_before: str, suffix: str) -> bool:
    """Whether the suffix's next non-blank line, after the cursor's, is indented deeper than the
    cursor's line: a body or arguments that go on with it are already there."""
    below = next((ln for ln in suffix.split("\n", NEAR_LINES)[1:NEAR_LINES] if ln.strip()), "")
    return bool(below) and _indent(below) > _indent(line_before)


def loops(text: str, line_before: str = "") -> bool:
    """Whether an answer repeats itself: lines by shape (`runaway_at`), a chunk within a line
    (`_cut_loop`), or a chunk that differs only in its strings and numbers (`typeof x !== 'a' ||
    typeof x !== 'b' || ...`; its first line read after `line_before`, the cursor line's start,
    so that its quotes pair as in the buffer)."""
    lines = text.split("\n")
    return runaway_at(text) is not None or any(
        _cut_loop(line) != line or _LOOSE_LOOP.search(_shape(head + line, names=False))
        for head, line in zip([line_before] + [""] * len(lines), lines))


MAX_LOGICAL_LINES = 8


def logical_line(text: str, line_before: str, tail: str, quote: str = "", *, final: bool = True) -> str | None:
    """The first logical line of `text`: its physical lines up to the one where every bracket
    opened on the cursor's line is closed again (the rest of the line, `tail`, counted), or None
    while it is not complete. A call spread over lines is one line to the user (issue 14). Inside
    a string opened by `quote` (see `open_quote`) that the line does not close, a next line of
    only the closing quote belongs to it: a docstring's sentence ends, then the docstring. A text
    still streaming (not `final`) waits for that next line."""
    depth = _balance(line_before) + (_balance(tail) if tail.strip() else 0)
    closes = bool(quote) and quote not in tail
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1][:MAX_LOGICAL_LINES]):
        depth += _balance(line)
        if depth > 0:
            continue
        if closes and quote not in line:
            if i + 2 >= len(lines) and not final:
                return None  # the next line, which may close the string, is not complete yet
            if i + 2 < len(lines) and lines[i + 1].strip().rstrip(")]},;") == quote:
                return "\n".join(lines[: i + 2])
        return "\n".join(lines[: i + 1])
    return None


@functools.lru_cache(maxsize=16)
def open_quote(prefix: str, language: str) -> str:
    """The triple quote of a Python string that the cursor is inside, or "": an odd count of
    either before it (the approximation `syntaxcut` makes too). Cached: a completion asks once
    per token, and a string's hash is kept with it."""
    if language != "python":
        return ""
    return next((q for q in ('"""', "'''") if prefix.count(q) % 2), "")


def runaway_at(text: str) -> int | None:
    """Where a completion starts repeating itself (a character offset), or None.

    Lines are compared by shape: one line repeated three times in a row once numbers and strings
    are abstracted (`return jsonify(error=...), 404`, then 405, 406), or a run of two to five
    lines repeated with identifiers abstracted too. A run of lines that all share one shape (the
    `self.a = a` lines of an `__init__`) is not a loop.
    """
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    rows = [i for i, line in enumerate(lines) if line.strip()]
    exact = [_shape(lines[i], names=False) for i in rows]
    loose = [_shape(lines[i], names=True) for i in rows]
    for k in range(2, len(rows)):
        if exact[k] == exact[k - 1] == exact[k - 2]:
            return offsets[rows[k - 1]]
    for period in range(2, 6):
        for k in range(len(rows) - 2 * period + 1):
            run = loose[k:k + period]
            if run == loose[k + period:k + 2 * period] and len(set(run)) > 1:
                return offsets[rows[k + period]]
    return None


_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`")
_NUMBER = re.compile(r"\b\d[\w.]*")
_NAME = re.compile(r"[A-Za-z_$][\w$]*")


def _shape(line: str, names: bool) -> str:
    shape = _NUMBER.sub("0", _STRING.sub('""', line.strip()))
    return _NAME.sub("a", shape) if names else shape


def _strip_fences(text: str) -> str:
    """Chat models wrap answers in fences; keep what is inside the first fenced block."""
    lines = text.split("\n")
    if lines and _FENCE.match(lines[0]):
        lines = lines[1:]
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            return "\n".join(lines[:i])
    return "\n".join(lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _keep_scope(text: str, prefix: str) -> str:
    """Stop at the first line that leaves the cursor's block, or at two blank lines in a row."""
    lines = text.split("\n")
    first_col = len(prefix.rsplit("\n", 1)[-1])
    scope = first_col + _indent(lines[0]) if lines[0].strip() else first_col
    if not lines[0].strip() and len(lines) > 1:
        # The completion starts on a new line: that line's indent sets the scope.
        nxt = next((ln for ln in lines[1:] if ln.strip()), "")
        scope = min(_indent(nxt), first_col) if nxt else first_col
    kept = [lines[0]]
    blank_run = 0
    for line in lines[1:]:
        if not line.strip():
            blank_run += 1
            if blank_run >= 2:
                break
            kept.append(line)
            continue
        blank_run = 0
        if _indent(line) < scope:
            break
        kept.append(line)
    return "\n".join(kept)


def _cut_repetition(text: str, prefix: str) -> str:
    """Cut where lines start repeating (by shape, see `runaway_at`), a line that repeats the one
    before it, and a run that loops within one line."""
    loop = runaway_at(text)
    if loop is not None:
        text = text[:loop].rstrip("\n")
    lines = text.split("\n")
    prev = prefix.rstrip("\n").rsplit("\n", 1)[-1].strip() if not lines[0].strip() else ""
    kept: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped and stripped == prev and len(stripped) > 2:
            break
        kept.append(_cut_loop(line))
        if kept[-1] != line:
            break
        if stripped:
            prev = stripped
    return "\n".join(kept)


_LOOP = re.compile(r"(\S)\1{15,}|(.{2,40}?)\2{3,}")
# A chunk of a line's shape repeated four times or more (shapes turn every string into "").
_LOOSE_LOOP = re.compile(r"(\S.{7,59}?)\1{3,}")


def _cut_loop(line: str) -> str:
    """`x = foo foo foo foo` -> `x = foo`: a chunk looping four or more times is kept once."""
    for match in _LOOP.finditer(line):
        unit = match.group(1) or match.group(2)
        if unit.strip():  # runs of indentation or alignment are not loops
            return (line[: match.start()] + unit).rstrip()
    return line


def _trim_suffix_overlap(text: str, prefix: str, suffix: str, multiline: bool) -> str:
    """Drop what the suffix already has: the rest of the line, closing brackets, or whole lines."""
    tail = suffix.split("\n", 1)[0]
    if tail.strip() and text.endswith(tail.strip()):
        text = text[: len(text) - len(tail.strip())]
    text = _trim_extra_closers(text, prefix.rsplit("\n", 1)[-1], tail)
    if multiline or "\n" in text:
        # A one-line answer spans lines too: `if err != nil {` with its body, which the file
        # below the cursor may already hold.
        text = _trim_suffix_lines(text, suffix)
    return text


def _balance(text: str) -> int:
    """Openers minus closers, ignoring brackets inside simple string literals."""
    depth = 0
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'`":
            quote = ch
        elif ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth -= 1
    return depth


def _trim_extra_closers(text: str, line_before: str, tail: str) -> str:
    """Remove trailing closers that would close more than the line opened, given the tail."""
    last = text.rsplit("\n", 1)[-1]
    head = text[: len(text) - len(last)]
    while last and last.rstrip()[-1:] in CLOSERS and _balance(line_before + last + tail) < 0:
        last = last.rstrip()[:-1]
    return head + last


def _trim_suffix_lines(text: str, suffix: str) -> str:
    """Drop trailing completion lines that the suffix starts with (e.g. a closing brace)."""
    after = [ln.strip() for ln in suffix.split("\n", NEAR_LINES)[1:NEAR_LINES] if ln.strip()]
    lines = text.rstrip().split("\n")
    for n in range(min(len(lines) - 1, len(after)), 0, -1):
        if [ln.strip() for ln in lines[-n:]] == after[:n]:
            return "\n".join(lines[:-n])
    return text


_WORD = re.compile(r"\w+|[^\w\s]")
# A phrase of this many words or more repeated three times in a row is a loop; a shorter one
# (one word, a word and its hyphen) needs four.
LONG_PHRASE = 3


def degenerate_phrase(text: str, window: int = 96) -> str | None:
    """The phrase an answer keeps repeating at its end, or None (`Flask-Python-Python-Python-`,
    `returns a new function that returns a new function that ...`)."""
    words = _WORD.findall(text[-window * 8:])[-window:]
    for size in range(1, 13):
        times = 3 if size >= LONG_PHRASE else 4
        if len(words) < size * times:
            break
        unit = words[-size:]
        if all(words[-size * (k + 1):len(words) - size * k] == unit for k in range(1, times)):
            return " ".join(unit)
    return None


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n\n")


def to_sentence_end(text: str) -> str:
    """Prose cut after its last complete sentence (an answer that ran out of tokens mid-way)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text.rstrip())]
    return text[: ends[-1]].rstrip() if ends else text.rstrip()
