"""Snippet text for definitions: whole when short, else signature and docstring, or a skeleton."""

from __future__ import annotations

from codeflow.context.describe import docstring, signature
from codeflow.context.symbols import Definition, FileIndex

FULL_FUNCTION_LINES = 14
FULL_CLASS_LINES = 18
MAX_SKELETON_ENTRIES = 40
_LINE_CAP = 160


def _cap(line: str) -> str:
    return line if len(line) <= _LINE_CAP else line[:_LINE_CAP] + " ..."


def _elided(lang: str, indent: str) -> str:
    return f"{indent}    ..." if lang == "python" else f"{indent}    // ..."


def _header_lines(lang: str, lines: list[str], d: Definition) -> list[str]:
    """The signature lines and (Python) the docstring, up to a few lines."""
    stop = d.body_line if d.body_line > d.start_line else d.start_line + 1
    head = lines[d.start_line:min(stop, d.start_line + 6)]
    doc = docstring(lang, lines, d) if lang == "python" else ""
    if doc and d.body_line >= 0:
        head += lines[d.body_line:d.body_line + min(doc.count("\n") + 1, 4)]
    return head


def definition_text(lang: str, lines: list[str], d: Definition) -> tuple[str, bool]:
    """(text, whole) for a function, method or value: the whole text when short enough."""
    span = lines[d.start_line:d.end_line + 1]
    limit = FULL_CLASS_LINES if d.kind == "class" else FULL_FUNCTION_LINES
    if len(span) <= limit:
        return "\n".join(_cap(s) for s in span), True
    indent = span[0][:len(span[0]) - len(span[0].lstrip())] if span else ""
    return "\n".join([*(_cap(s) for s in _header_lines(lang, lines, d)), _elided(lang, indent)]), False


def _signature_line(lang: str, lines: list[str], d: Definition, indent: str) -> str:
    if d.kind in ("variable", "constant", "attribute"):
        first = lines[d.start_line].strip() if d.start_line < len(lines) else ""
        return indent + _cap(first)
    if lang == "python":
        return f"{indent}{_cap(signature(lines, d))}: ..."
    return f"{indent}{_cap(signature(lines, d))}" + (" { ... }" if d.body_line >= 0 else "")


def class_skeleton(lang: str, lines: list[str], fi: FileIndex, cls: Definition) -> str:
    """A class's header, docstring and one line per member: its public surface."""
    text, whole = definition_text(lang, lines, cls)
    if whole:
        return text
    out = [_cap(s) for s in _header_lines(lang, lines, cls)]
    members = [d for d in fi.defs if d.parent == cls.name and cls.start_line < d.start_line <= cls.end_line]
    indent = " " * (members[0].start_col if members else cls.start_col + 4)
    for d in members[:MAX_SKELETON_ENTRIES]:
        if d.kind == "attribute":
            out.append(f"{indent}{_cap(signature(lines, d))}")
        else:
            out.append(_signature_line(lang, lines, d, " " * d.start_col if d.start_col else indent))
    if len(members) > MAX_SKELETON_ENTRIES:
        out.append(_elided(lang, indent[:-4] if len(indent) >= 4 else ""))
    return "\n".join(out)


def class_signatures(lang: str, lines: list[str], fi: FileIndex, cls: Definition) -> str:
    """A class's first line and one line per method: its shortest useful form, for a packer
    that has no room for the skeleton (issue 16: a prompt cut to the latency budget)."""
    methods = [d for d in fi.defs if d.parent == cls.name and cls.start_line < d.start_line <= cls.end_line
               and d.kind not in ("attribute", "variable", "constant")][:MAX_SKELETON_ENTRIES]
    head = _cap(lines[cls.start_line]) if cls.start_line < len(lines) else cls.name
    return "\n".join([head, *(_signature_line(lang, lines, d, " " * d.start_col) for d in methods)])


def module_skeleton(lang: str, lines: list[str], fi: FileIndex) -> tuple[str, int, int]:
    """(text, first line, last line) of a file's public top-level signatures."""
    tops = [d for d in fi.defs if not d.parent and d.exported][:MAX_SKELETON_ENTRIES]
    if not tops:
        return "", 0, 0
    out = [_signature_line(lang, lines, d, "") for d in tops]
    return "\n".join(out), tops[0].start_line, max(d.end_line for d in tops)
