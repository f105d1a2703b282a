"""Conversions between LSP types and Codeflow's domain values."""

from __future__ import annotations

import msgspec
from lsprotocol import types

from codeflow.context.errors import PositionError
from codeflow.context.languages import language_id_of
from codeflow.lsp_server.assistant.completion import Completion


class PositionArg(msgspec.Struct, frozen=True):
    """An LSP position inside command arguments."""

    line: int
    character: int


class CursorArg(msgspec.Struct, frozen=True):
    """The `{uri, position}` argument of Codeflow's commands."""

    uri: str
    position: PositionArg


def language_of(path: str, language_id: str | None = None) -> str:
    """The LSP language id: the client's, else guessed from the file extension."""
    return language_id or language_id_of(path)


def split_at(source: str, position: types.Position) -> tuple[str, str]:
    """Prefix and suffix of a text at an LSP position (UTF-16 columns)."""
    if position.line < 0 or position.character < 0:
        raise PositionError(f"negative position {position.line}:{position.character}")
    lines = source.split("\n")
    if position.line >= len(lines):
        raise PositionError(f"line {position.line} is past the end ({len(lines)} lines)")
    line = lines[position.line].rstrip("\r")
    col, units = 0, 0
    while units < position.character and col < len(line):
        units += 2 if ord(line[col]) > 0xFFFF else 1
        col += 1
    if units < position.character:
        raise PositionError(f"column {position.character} is past the end of line {position.line} ({units})")
    offset = sum(len(x) + 1 for x in lines[: position.line]) + col
    return source[:offset], source[offset:]


def end_position(prefix: str, text: str) -> types.Position:
    """Where inserting `text` right after `prefix` ends, as an LSP position."""
    whole = prefix + text
    line = whole.count("\n")
    last = whole[whole.rfind("\n") + 1:]
    return types.Position(line=line, character=len(last.encode("utf-16-le")) // 2)


def inline_items(completion: Completion, position: types.Position) -> types.InlineCompletionList:
    """The ghost-text answer: one item inserted at the cursor."""
    if not completion.text:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(
        insert_text=completion.text,
        range=types.Range(start=position, end=position),
    )
    return types.InlineCompletionList(items=[item])


def completion_items(completion: Completion, position: types.Position) -> types.CompletionList:
    """The `textDocument/completion` fallback: the same text as one completion item."""
    if not completion.text:
        return types.CompletionList(is_incomplete=True, items=[])
    first = completion.text.strip().split("\n", 1)[0]
    item = types.CompletionItem(
        label=first[:60] or completion.text[:60],
        kind=types.CompletionItemKind.Text,
        detail="Codeflow",
        documentation=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=f"```\n{completion.text}\n```"
        ),
        text_edit=types.TextEdit(range=types.Range(start=position, end=position), new_text=completion.text),
        sort_text="0",
        filter_text=first,
    )
    return types.CompletionList(is_incomplete=True, items=[item])
