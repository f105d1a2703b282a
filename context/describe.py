"""Signatures and docstrings, derived from a file's text only when needed (hover, skeletons), so
that indexing stays close to raw parse time and the index stays small."""

from __future__ import annotations

import re

import msgspec

from codeflow.context.symbols import Definition

MAX_SIGNATURE = 240
MAX_DOC = 300
_STRING_START = re.compile(r"""^[rRuUbBfF]{0,2}("{3}|'{3}|"|')""")
_COMMENT_START = ("//", "/*", "*", "#")


def signature(lines: list[str], d: Definition) -> str:
    """The definition's header, whitespace collapsed: from its start up to its body."""
    if d.signature:
        return d.signature
    if d.start_line >= len(lines):
        return ""
    if d.body_line == d.start_line:
        head = lines[d.start_line][d.start_col:d.body_col]
    elif d.start_line < d.body_line < len(lines):
        parts = lines[d.start_line:d.body_line + 1]
        parts[0] = parts[0][d.start_col:]
        parts[-1] = parts[-1][:d.body_col]
        head = " ".join(parts)
    else:
        head = lines[d.start_line][d.start_col:]
    return " ".join(head.split()).rstrip(":{ ")[:MAX_SIGNATURE]


def _python_doc(lines: list[str], d: Definition) -> str:
    if d.body_line < 0 or d.body_line >= len(lines):
        return ""
    first = lines[d.body_line][d.body_col:]
    m = _STRING_START.match(first)
    if m is None:
        return ""
    quote = m.group(1)
    rest = first[m.end():]
    if quote in rest:
        return rest.split(quote, 1)[0].strip()[:MAX_DOC]
    body = [rest]
    for line in lines[d.body_line + 1:d.body_line + 40]:
        if quote in line:
            body.append(line.split(quote, 1)[0])
            break
        body.append(line)
    text = "\n".join(s.strip() for s in body).strip()
    return text.split("\n\n", 1)[0][:MAX_DOC]


def _comment_doc(lines: list[str], d: Definition) -> str:
    out: list[str] = []
    row = d.start_line - 1
    while row >= 0 and lines[row].strip().startswith(_COMMENT_START) and len(out) < 12:
        out.insert(0, lines[row].strip())
        row -= 1
    return "\n".join(out)[:MAX_DOC]


def docstring(lang: str, lines: list[str], d: Definition) -> str:
    """The docstring (Python) or the comment block just above (other languages)."""
    if d.docstring:
        return d.docstring
    if lang == "python":
        return _python_doc(lines, d) if d.kind in ("function", "method", "class", "property") else ""
    return _comment_doc(lines, d)


def enrich(lang: str, lines: list[str], d: Definition) -> Definition:
    """The definition with its signature and docstring filled in."""
    if d.start_line >= len(lines):
        return d
    return msgspec.structs.replace(d, signature=signature(lines, d), docstring=docstring(lang, lines, d))
