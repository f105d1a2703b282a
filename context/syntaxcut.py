"""Cut a completion where it stops being code (issue 14): the shown text is the longest prefix of
the model's that adds no tree-sitter ERROR or MISSING node the buffer without it does not have,
and that leaves no block open that nothing closes; a shorter prefix wins when it also ends an
error the buffer had (a half-typed line finished, not run on: `x := g(1) +` shows `g(1)`).

The README's demo showed `User.find_by_email(data["email"]):` after `user = `: the trailing `:`
makes the assignment invalid Python. Judging the completion in isolation cannot see that; judging
it in the buffer, against the buffer without it, can. Errors are compared as nodes, not counted:
error recovery can merge two errors into one, so a count can drop while a new error appears; an
error inside one the buffer already had is not new.

Only a window of the buffer is parsed, from the nearest outermost statement before the cursor to
the first line after it that is at that statement's depth again, so that no brace or indent the
window cuts off can pair with one the completion opens (a window of the last 30 lines did, and a
window that ended inside a statement made tree-sitter turn all of it into one ERROR, 16 ms a
parse). The window is parsed once; each candidate prefix is an edit of that tree, parsed
incrementally (0.05-0.1 ms instead of 0.2-1 ms); p95 1.5 ms against 59 ms in `codeflow bench
quality` (median of 3 runs a case, loaded 2-core machine).
"""

from __future__ import annotations

import re

import tree_sitter as ts

from codeflow.context.edits import grammar_name
from codeflow.context.languages import parser

# How far the window reaches for a statement at the outer depth: a parse of 100 lines costs
# about 0.5 ms on a loaded 2-core machine, and post-processing has 5 ms (issue 14).
MAX_BEFORE = 80
MAX_AFTER = 40
# In a brace language, a block longer than that is parsed to its closing brace up to this far.
MAX_CLOSE = 200
# Candidate prefixes parsed at most (0.05-0.1 ms each, incrementally).
MAX_PARSES = 20
# Ends of tokens: an identifier, a number, a simple string, or one other non-space character.
_TOKEN = re.compile(r"[A-Za-z_$][\w$]*|\d[\w.]*|\"\"\"|'''|\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|\S")
# Lines that continue the statement before them rather than start one.
_CONTINUES = re.compile(r"[)\]}.,:?&|+\-*/%=<>]|(else|elif|except|finally|catch|case|default)\b")
# Heads of control statements and definitions in brace languages (and `} else`).
_CONTROL = re.compile(r"\s*}?\s*(if|else|for|while|do|switch|try|catch|finally|func|function|class)\b")
_COMMENT = re.compile(r"#.*$")

Error = tuple[str, int, int]


def syntax_cut(text: str, prefix: str, suffix: str, language: str) -> str:
    """`text` cut to its prefix that adds no parse error to the buffer and opens no block that
    nothing closes, ends the most of the errors the buffer had, and is the longest such; "" when
    no prefix qualifies. Languages without a grammar pass."""
    name = grammar_name(language)
    if name is None or not text.strip():
        return text
    window = Window(name, prefix, suffix, opens=max(0, _braces(text)))
    fewest = window.errors_left(text)
    if fewest == 0:
        return text
    best = text if fewest is not None else ""
    for cut in window.cuts(text):
        found = window.errors_left(text[:cut])
        if found is not None and (fewest is None or found < fewest):
            # The longest prefix that fits, or a shorter one that also ends an error the buffer
            # had (`x := g(1) +` -> `g(1)`: a trailing token that only opens what nothing closes).
            best, fewest = text[:cut], found
            if found == 0:
                break
    return best.rstrip() if best.strip() else ""


def unfinished(text: str, prefix: str, suffix: str, language: str) -> bool:
    """Whether `text` at the cursor leaves a parse error on the cursor's line, its own lines or
    the line after them: the line or statement it continues is still broken. False without a
    grammar."""
    name = grammar_name(language)
    return name is not None and Window(name, prefix, suffix).unfinished(text)


class Window:
    """The lines around the cursor, parsed once; candidates are judged by incremental reparses."""

    def __init__(self, grammar: str, prefix: str, suffix: str, opens: int = 0) -> None:
        self.python = grammar == "python"
        head, tail = _window(prefix, suffix, self.python, opens)
        self.parser = parser(grammar)
        self.head, self.tail = head.encode("utf-8", "surrogatepass"), tail.encode("utf-8", "surrogatepass")
        self.at = (head.count("\n"), len(head.rsplit("\n", 1)[-1].encode("utf-8", "surrogatepass")))
        self.tree = self.parser.parse(self.head + self.tail)
        self.baseline = _errors(self.tree.root_node)
        self.next_line = next((ln for ln in tail.split("\n")[1:] if ln.strip()), "")
        self.rest_of_line = tail.split("\n", 1)[0]

    def errors_left(self, candidate: str) -> int | None:
        """None when the buffer with `candidate` at the cursor has an error the buffer without it
        lacks, or `candidate` leaves a Python block without a body; else how many errors remain
        (the buffer's own, such as a half-typed line that `candidate` did not finish)."""
        if self.python and self._opens_empty_block(candidate):
            return None
        start, size, found = self._parse_with(candidate)
        errors = [_unshift(e, start, size) for e in found]
        if any(not _within(e, self.baseline) for e in errors):
            return None
        return len(errors)

    def unfinished(self, candidate: str) -> bool:
        """Whether the buffer with `candidate` at the cursor has an error from the cursor's line to
        the line after the candidate's end (a half-typed line it did not finish: `from .bl` +
        `ueprints`; error recovery often places the error on the next line)."""
        start, size, found = self._parse_with(candidate)
        first = self.head.rfind(b"\n") + 1
        lines = self.tail.split(b"\n", 2)
        last = start + size + len(b"\n".join(lines[:2]))
        return any(e[1] <= last and e[2] >= first for e in found)

    def _parse_with(self, candidate: str) -> tuple[int, int, list[Error]]:
        """(where `candidate` starts, its size, the errors) of the window with it at the cursor,
        parsed as an edit of the window's tree."""
        data = candidate.encode("utf-8", "surrogatepass")
        start, size = len(self.head), len(data)
        rows = data.count(b"\n")
        end = (self.at[0] + rows, (self.at[1] if rows == 0 else 0) + len(data.rsplit(b"\n", 1)[-1]))
        old = self.tree.copy()
        old.edit(start_byte=start, old_end_byte=start, new_end_byte=start + size,
                 start_point=self.at, old_end_point=self.at, new_end_point=end)
        tree = self.parser.parse(self.head + data + self.tail, old)
        return start, size, _errors(tree.root_node)

    def cuts(self, text: str) -> list[int]:
        """Where `text` may be cut, longest first, within the parse budget: a block at its lines'
        ends (a block is cut at its end), one line at its tokens' ends, but not a control
        statement's head in a brace language (`if (x > 1)` cut before its `{` would take the next
        line of the file as its body)."""
        lines = text.split("\n")
        ends = [len("\n".join(lines[:n])) for n in range(len(lines) - 1, 0, -1)]
        if len(lines) == 1 and (self.python or not _CONTROL.match(self.head_line + text)):
            ends += [m.end() for m in _TOKEN.finditer(text)][:-1][::-1]
        return [e for e in ends if text[:e].strip()][:MAX_PARSES]

    def _opens_empty_block(self, candidate: str) -> bool:
        """Whether a block ends in a head whose body neither it nor the file has: tree-sitter
        takes `if x:` with nothing under it as an empty block, Python does not. A one-line head
        alone is a fine completion: the user goes on to type its body."""
        lines = [ln for ln in candidate.split("\n") if ln.strip()]
        if len(lines) < 2 or self.rest_of_line.strip():
            return False
        if not _COMMENT.sub("", lines[-1]).rstrip().endswith(":"):
            return False
        return _indent(self.next_line) <= _indent(lines[-1]) or not self.next_line.strip()

    @property
    def head_line(self) -> str:
        """The cursor line up to the cursor."""
        return self.head.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")


def _window(prefix: str, suffix: str, python: bool, opens: int) -> tuple[str, str]:
    """The text before and after the cursor that the window holds: from the nearest statement at
    the outermost depth of the lines before, to the next statement at that depth, or else to the
    last whole statement at the outermost depth of the lines after (never into a half one). Lines
    inside a multi-line string are prose, never a statement (a docstring's text at column 0). In a
    brace language the tail reaches the brace that closes the head's, and the `opens` braces the
    completion opens, when that is nearer than a statement at the outer depth."""
    before = prefix.split("\n")
    after = suffix.split("\n")
    marks = _TRIPLE if python else ("`",)
    line_start = tuple(a - b for a, b in zip(_quotes(prefix, marks), _quotes(before[-1], marks)))
    quoted = _in_string(before[-MAX_BEFORE - 1:-1][::-1], line_start, marks, own_first=True)
    starts = [len(before) - 2 - k for k, (line, inside) in enumerate(quoted)
              if not inside and _starts_statement(line)]
    if not starts:
        return "\n".join(before[-MAX_BEFORE:]), "\n".join(after[:MAX_AFTER])
    depth = min(_indent(before[i]) for i in starts)
    first = next(i for i in starts if _indent(before[i]) == depth)
    # Counted from the file's end, which is outside any string: a completion that opens one
    # (`msg = ` + `"""\\`) has its text, then its closing quotes, in the suffix.
    quoted = _in_string(after[:MAX_AFTER + 1], _quotes(suffix, marks), marks, own_first=False)
    ends = [j for j, (line, inside) in enumerate(quoted) if j and not inside and _starts_statement(line)]
    if len(after) <= MAX_AFTER + 1 or not ends:
        last = len(after)
    elif not python and (close := _closing(after, _braces("\n".join(before[first:])) + opens)) is not None:
        last = close + 1
    else:
        outer = min(_indent(after[j]) for j in ends)
        last = max(j for j in ends if _indent(after[j]) == outer)
    sibling = next((j for j in ends if _indent(after[j]) <= depth), None)
    if sibling is not None:
        # The tail ends with that next statement: a completion that swallows it shows.
        last = sibling + 1
    return "\n".join(before[first:]), "\n".join(after[:last])


def _closing(after: list[str], opened: int) -> int | None:
    """The line after the cursor that closes the last of the `opened` braces the window's head left
    open, within MAX_CLOSE lines: a `{` the completion opens (`subscribe((x) {`) is closed before
    it, however long the block."""
    depth = opened
    for j, line in enumerate(after[:MAX_CLOSE]):
        depth += _braces(line)
        if depth <= 0:
            return j
    return None


def _braces(text: str) -> int:
    return text.count("{") - text.count("}")


# What opens a string that spans lines: Python's triple quotes; backticks elsewhere (template
# literals, Go's raw strings; in Python they fill reST docstrings).
_TRIPLE = ('"""', "'''")


def _quotes(text: str, marks: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(text.count(q) for q in marks)


def _in_string(lines: list[str], counts: tuple[int, ...], marks: tuple[str, ...],
               own_first: bool) -> list[tuple[str, bool]]:
    """Each line with whether it starts inside a multi-line string, from the parity of the
    `marks` on the far side of its start: `counts` of them lie between the file's edge and the
    first line's far end (with `own_first`: the lines before the cursor, nearest first) or start
    (the lines after it, counted from the file's end)."""
    out = []
    for line in lines:
        found = _quotes(line, marks)
        if own_first:
            counts = tuple(c - f for c, f in zip(counts, found))
        out.append((line, any(c % 2 for c in counts)))
        if not own_first:
            counts = tuple(c - f for c, f in zip(counts, found))
    return out


def _starts_statement(line: str) -> bool:
    stripped = line.strip()
    # Not a comment, nor a quote: a window that starts at the end of a docstring is all string.
    return bool(stripped) and not _CONTINUES.match(stripped) and stripped[0] not in "#/*\"'`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _errors(root: ts.Node) -> list[Error]:
    """The ERROR and MISSING nodes under `root`, as (kind, start byte, end byte)."""
    found: list[Error] = []
    stack = [root] if root.has_error else []
    while stack:
        node = stack.pop()
        if node.is_missing:
            found.append(("MISSING " + node.type, node.start_byte, node.end_byte))
        elif node.type == "ERROR":
            found.append(("ERROR", node.start_byte, node.end_byte))
        else:
            stack.extend(c for c in node.children if c.has_error)
    return found


def _within(error: Error, baseline: list[Error]) -> bool:
    """Whether `error` lies inside one of the baseline's: error recovery splits and reshapes an
    error the buffer already had (`s = "` then `s = "a`), and that is not a new one."""
    return any(b[1] <= error[1] and error[2] <= b[2] for b in baseline)


def _unshift(error: Error, start: int, size: int) -> Error:
    """An error of the buffer with `size` bytes inserted at `start`, placed in the buffer without
    them: what lies after them moves back, what lies inside them lands on the cursor."""

    def back(b: int) -> int:
        return b if b <= start else (b - size if b >= start + size else start)

    return error[0], back(error[1]), back(error[2])


def added_errors(language: str, prefix: str, suffix: str, text: str, reference: str) -> int | None:
    """How many parse errors the whole buffer with `text` at the cursor has that it lacks with
    `reference` there (errors placed as in the buffer without either); None without a grammar.
    `codeflow bench quality` judges a shown completion against the original text this way."""
    name = grammar_name(language)
    if name is None:
        return None
    start = len(prefix.encode("utf-8", "surrogatepass"))

    def placed(inserted: str) -> list[Error]:
        data = (prefix + inserted + suffix).encode("utf-8", "surrogatepass")
        size = len(inserted.encode("utf-8", "surrogatepass"))
        return [_unshift(e, start, size) for e in _errors(parser(name).parse(data).root_node)]

    known = placed(reference)
    return sum(1 for e in placed(text) if not _within(e, known))
