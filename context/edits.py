"""Turn a model's rewrite of a region into minimal, syntax-checked edits of the document.

A code action asks the model to rewrite whole lines [start, end] of a document. Its answer is a
fenced code block; the block replaces those lines (re-indented to sit where they were), and the
edits sent back are only the line runs that differ (difflib), never a whole-file replace. The
result must parse at least as well as the original did, or the edit is rejected (issue 6).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import textwrap
from collections import Counter
from itertools import accumulate

import msgspec
import tree_sitter as ts

from codeflow.context.errors import EditRejectedError
from codeflow.context.extract import definition_at, extract
from codeflow.context.languages import SPECS, parser
from codeflow.context.symbols import Definition

# LSP language ids whose grammar goes by another name in languages.SPECS.
LSP_LANGUAGES = {"javascriptreact": "javascript", "typescriptreact": "tsx"}
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*[\w+#.-]*[^\n]*\n", re.M)


class LineEdit(msgspec.Struct, kw_only=True, frozen=True):
    """Replace the text between two 0-based (line, column) points; columns count code points."""

    start_line: int
    start_col: int
    end_line: int
    end_col: int
    new_text: str


class EditPlan(msgspec.Struct, kw_only=True, frozen=True):
    """The edits for one answer, and the document text they produce."""

    edits: tuple[LineEdit, ...]
    result: str
    code: str


def grammar_name(language: str) -> str | None:
    """The languages.SPECS name for an LSP language id, or None when Codeflow cannot parse it."""
    name = LSP_LANGUAGES.get(language, language)
    return name if name in SPECS else None


def split_lines(text: str) -> list[str]:
    """Lines with their "\\n" kept; the last one lacks it when the text does not end in one."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def extract_code(answer: str, prefill: str = "") -> str:
    """The code in a model's answer: its longest fenced block, or the text up to a closing fence
    when the prompt prefilled the opening one."""
    text = prefill + answer
    blocks = [m.group(3) for m in _FENCE.finditer(text)]
    if blocks:
        return max(blocks, key=len)
    opened = _OPEN_FENCE.search(text)
    if opened is not None:
        # Generation stopped at the closing fence (a stop string) or ran out of tokens.
        return text[opened.end():]
    return ""


def reindent(code: str, like: str) -> str:
    """`code` moved to the indentation of `like` (the region it replaces)."""
    code = textwrap.dedent(code.expandtabs(4) if "\t" in code and "\t" not in like else code)
    indent = _common_indent(like)
    if not indent:
        return code
    return "".join(indent + line if line.strip() else line for line in code.splitlines(keepends=True))


def _common_indent(text: str) -> str:
    indents = [re.match(r"[ \t]*", line).group(0) for line in text.splitlines() if line.strip()]
    if not indents:
        return ""
    first = min(indents, key=len)
    return first if all(i.startswith(first) for i in indents) else ""


def minimal_edits(old: str, new: str) -> list[LineEdit]:
    """The line runs that differ between two texts, as edits against `old`."""
    a, b = split_lines(old), split_lines(new)
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    edits: list[LineEdit] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start, end = _point(a, i1), _point(a, i2)
        edits.append(LineEdit(start_line=start[0], start_col=start[1], end_line=end[0], end_col=end[1],
                              new_text="".join(b[j1:j2])))
    return edits


def _point(lines: list[str], index: int) -> tuple[int, int]:
    """Where line `index` starts; past the end, the end of the text."""
    if index < len(lines) or not lines or lines[-1].endswith("\n"):
        return index, 0
    return len(lines) - 1, len(lines[-1])


def apply_edits(text: str, edits: list[LineEdit] | tuple[LineEdit, ...]) -> str:
    """Apply non-overlapping edits made against `text` (as a client would)."""
    starts = [0]
    for line in split_lines(text):
        starts.append(starts[-1] + len(line))
    out, cursor = [], 0
    for edit in sorted(edits, key=lambda e: (e.start_line, e.start_col)):
        begin = _offset(starts, text, edit.start_line, edit.start_col)
        end = _offset(starts, text, edit.end_line, edit.end_col)
        if begin < cursor or end < begin:
            raise EditRejectedError(f"overlapping edits at line {edit.start_line + 1}")
        out += [text[cursor:begin], edit.new_text]
        cursor = end
    return "".join(out) + text[cursor:]


def _offset(starts: list[int], text: str, line: int, col: int) -> int:
    if line >= len(starts) - 1 and col == 0:
        return len(text)
    if not 0 <= line < len(starts):
        raise EditRejectedError(f"edit position {line + 1}:{col + 1} is outside the document")
    return min(starts[line] + col, len(text))


def error_count(language: str, text: str) -> int | None:
    """How many ERROR or MISSING nodes tree-sitter finds; None when the language has no grammar."""
    name = grammar_name(language)
    if name is None:
        return None
    tree = parser(name).parse(text.encode("utf-8", "surrogatepass"))
    if not tree.root_node.has_error:
        return 0
    return _count_errors(tree.root_node)


def _count_errors(root: ts.Node) -> int:
    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            count += 1
        elif node.has_error:
            stack.extend(node.children)
    return count


def check_syntax(language: str, old: str, new: str) -> None:
    """Raise EditRejectedError when `new` parses worse than `old` did."""
    before = error_count(language, old)
    if before is None:
        return
    after = error_count(language, new)
    if after is not None and after > before:
        where = "the original parsed cleanly" if before == 0 else f"the original had {before}"
        raise EditRejectedError(f"the suggested code does not parse ({after} syntax errors; {where})")


def plan_replacement(text: str, start_line: int, end_line: int, answer: str, language: str,
                     prefill: str = "") -> EditPlan:
    """Minimal edits that replace lines [start_line, end_line] (0-based, inclusive) with the code in
    `answer`; raises EditRejectedError when there is no code, no change, or it breaks the syntax."""
    lines = split_lines(text)
    if not 0 <= start_line <= end_line < max(len(lines), 1):
        raise EditRejectedError(f"lines {start_line + 1}-{end_line + 1} are outside the document "
                                f"({len(lines)} lines)")
    code = extract_code(answer, prefill)
    if not code.strip():
        raise EditRejectedError("the model's answer held no code block")
    region = "".join(lines[start_line:end_line + 1])
    code = reindent(code.strip("\n") + "\n", region)
    if not region.endswith("\n"):
        code = code.rstrip("\n")
    if "\r\n" in region:
        code = code.replace("\r\n", "\n").replace("\n", "\r\n")
    return replace_lines(text, start_line, end_line, code, language)


def replace_lines(text: str, start_line: int, end_line: int, code: str, language: str) -> EditPlan:
    """Minimal, syntax-checked edits that put `code` in place of lines [start_line, end_line]."""
    lines = split_lines(text)
    result = "".join(lines[:start_line]) + code + "".join(lines[end_line + 1:])
    edits = minimal_edits(text, result)
    if not edits:
        raise EditRejectedError("the model suggested no change")
    check_syntax(language, text, result)
    check_target(language, text, result)
    return EditPlan(edits=tuple(edits), result=result, code=code)


def check_target(language: str, old: str, new: str) -> None:
    """Raise EditRejectedError when `new` defines again a function or class that `old` already
    has: the model rewrote code outside the target too (issue 14), and applying it would leave
    two of them, as the Flask app's `User` defined again in app.py."""
    name = grammar_name(language)
    if name is None:
        return
    before, after = _definitions(name, old), _definitions(name, new)
    twice = sorted({n for (n, k), count in after.items() if count > before[(n, k)] > 0})
    if twice:
        names = ", ".join(f"`{n}`" for n in twice)
        raise EditRejectedError(f"the answer also rewrites {names}, outside the code it was asked to change")


def _definitions(grammar: str, text: str) -> Counter[tuple[str, str]]:
    index = extract("", grammar, text.encode("utf-8", "surrogatepass"))
    return Counter((d.name, d.kind) for d in index.defs if d.kind in ("function", "method", "class"))


# Moved code (issue 11 section 1): an edit is only ever computed on the text it is sent for. When
# the document changed, the target region is found again by content, and only when exactly one
# run of lines matches it; offsets from one version are never applied to another.


def region_hash(region: str) -> str:
    """A fingerprint of a region's exact text (sha256, 32 hex digits)."""
    return hashlib.sha256(region.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def region_starts(text: str, digest: str, n_lines: int, chars: int, limit: int = 2) -> list[int]:
    """The 0-based first lines of up to `limit` runs of `n_lines` lines whose text has `chars`
    code points and fingerprint `digest`."""
    if n_lines <= 0:
        return []
    lines = split_lines(text)
    offsets = list(accumulate((len(line) for line in lines), initial=0))
    found: list[int] = []
    for start in range(len(lines) - n_lines + 1):
        begin, end = offsets[start], offsets[start + n_lines]
        # Comparing lengths first keeps the scan cheap: few runs have the region's exact length.
        if end - begin == chars and region_hash(text[begin:end]) == digest:
            found.append(start)
            if len(found) >= limit:
                break
    return found


def locate_region(text: str, digest: str, n_lines: int, chars: int, was_line: int) -> int:
    """Where the region that started at `was_line` starts in `text` now; raises EditRejectedError
    when it is gone (edited) or no longer unique."""
    found = region_starts(text, digest, n_lines, chars)
    span = f"lines {was_line + 1}-{was_line + n_lines}"
    if not found:
        raise EditRejectedError(f"the code changed since the action was offered: {span} as they were "
                                "are no longer in the document")
    if len(found) > 1:
        raise EditRejectedError(f"the code changed since the action was offered: {span} as they were "
                                f"now occur more than once (at lines {found[0] + 1} and {found[1] + 1})")
    return found[0]


def rebase_plan(plan: EditPlan, old_text: str, start_line: int, end_line: int, new_text: str,
                language: str) -> EditPlan:
    """A plan made on `old_text` for lines [start_line, end_line], made again on `new_text` where
    those exact lines now are; raises EditRejectedError when they are not there exactly once."""
    region = line_span(old_text, start_line, end_line)
    n_lines = end_line - start_line + 1
    start = locate_region(new_text, region_hash(region), n_lines, len(region), start_line)
    return replace_lines(new_text, start, start + n_lines - 1, plan.code, language)


def enclosing_definition(language: str, text: str, line: int) -> Definition | None:
    """The innermost function, method or class around a 0-based line, parsed here."""
    name = grammar_name(language)
    if name is None:
        return None
    data = text.encode("utf-8", "surrogatepass")
    return definition_at(name, data, parser(name).parse(data), line)


def line_span(text: str, start_line: int, end_line: int) -> str:
    """Lines [start_line, end_line] (0-based, inclusive) of a text."""
    return "".join(split_lines(text)[start_line:end_line + 1])
