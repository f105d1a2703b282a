"""The context engine's public surface: what the assistant may ask of it (issue 17 §2).

`ContextEngine` (context/engine.py) implements it; the assistant layer and the CLI type against
this Protocol and never reach into the engine's workspace or index.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from codeflow.context.pack import PackedContext
from codeflow.context.symbols import Definition, Usage


class SourceFile(msgspec.Struct, kw_only=True, frozen=True):
    """A workspace file as an explanation quotes it."""

    lines: list[str]
    language: str
    # Relative to its workspace root, with forward slashes.
    display: str


class ContextEngineAPI(Protocol):
    """A watched, indexed workspace that answers "what should the model see here?"."""

    def start(self, watch: bool = True, on_progress: Callable[[int, int], None] | None = None,
              on_problem: Callable[[str], None] | None = None) -> None:
        """Index in the background and watch the roots; returns at once."""
        ...

    def index_now(self) -> None:
        """Index every root now (blocking), for one-shot commands."""
        ...

    def stop(self) -> None:
        """Stop watching and indexing."""
        ...

    def set_buffer(self, path: Path, text: str) -> bool:
        """An open buffer overrides the disk; False when it is too large to keep."""
        ...

    def drop_buffer(self, path: Path) -> None:
        """A closed buffer: back to the file on disk."""
        ...

    def record_edit(self, path: Path, line: int, text: str = "") -> None:
        """A recent edit, for the ranking."""
        ...

    # Counts changes read from disk (watcher batches, rescans).
    disk_version: int

    def query(self, path: Path, text: str, line: int, col: int, budget: int,
              count_tokens: Callable[[str], int] | None = None, file_sep: str | None = None,
              skip: frozenset[tuple[str, int, int]] = frozenset()) -> PackedContext:
        """Context for a cursor, packed into `budget` tokens."""
        ...

    def file_context(self, path: Path, text: str, budget: int, count_tokens: Callable[[str], int] | None = None,
                     file_sep: str | None = None) -> PackedContext:
        """What the file's imports define, packed without regard to the cursor (cached)."""
        ...

    def render(self, packed: PackedContext, path: Path, file_sep: str | None = None) -> str:
        """Packed snippets as prompt text."""
        ...

    def function_at(self, path: Path, text: str, line: int) -> Definition | None:
        """The innermost function, method or class around a line of `text` (its kept tree)."""
        ...

    def is_private(self, path: Path) -> bool:
        """Whether a document must stay on this machine."""
        ...

    def lookup(self, path: Path | str, name: str) -> list[tuple[str, Definition]] | None:
        """The workspace definitions a bare `name` in a file refers to."""
        ...

    def callers_of(self, name: str, home: Path | str | None = None) -> list[Usage]:
        """Where the workspace uses a definition."""
        ...

    def source_of(self, path: str) -> SourceFile | None:
        """An indexed file's lines, language and display path; None when it is gone."""
        ...
