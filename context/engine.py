"""The context engine: a watched, indexed workspace answering "what should the model see here?"."""

from __future__ import annotations

import os
import re
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from codeflow.context import rank, surroundings
from codeflow.context.api import SourceFile
from codeflow.context.cache import default_dir
from codeflow.context.describe import enrich
from codeflow.context.errors import PositionError
from codeflow.context.extract import definition_at
from codeflow.context.languages import SPECS, language_of
from codeflow.context.pack import Dropped, PackedContext, Snippet, estimate_tokens, pack, render
from codeflow.context.pyresolve import PyResolver
from codeflow.context.symbols import Definition, FileIndex, Usage
from codeflow.context.watch import Watcher
from codeflow.context.workspace import Workspace

__all__ = ["ContextEngine", "Dropped", "EngineConfig", "PackedContext", "Snippet", "parse_position"]

EDIT_RING = 64
MAX_CALLERS = 50


class EngineConfig(msgspec.Struct, kw_only=True, frozen=True):
    """What the user can set about indexing (mirrors `[context]` in codeflow.toml)."""

    exclude: tuple[str, ...] = ()
    secret_globs: tuple[str, ...] = ()
    max_file_bytes: int = 1_000_000
    cache_dir: str | None = None
    use_cache: bool = True
    # Processes that parse a cold index (issue 16 §3); 0: one per core this process may use.
    index_workers: int = 0


class ContextEngine:
    """Indexes workspace roots (in the background, watched) and packs context for a cursor."""

    def __init__(self, roots: list[Path], config: EngineConfig = EngineConfig()) -> None:
        cache_dir = (Path(config.cache_dir) if config.cache_dir else default_dir()) if config.use_cache else None
        self.ws = Workspace(roots, config.exclude, config.secret_globs, config.max_file_bytes, cache_dir,
                            workers=config.index_workers)
        self.roots = self.ws.roots
        self.index = self.ws.index
        self._edits: deque[tuple[str, int]] = deque(maxlen=EDIT_RING)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        self.error: BaseException | None = None
        self.rescans = 0  # after lost file events (inotify queue overflow)
        self._on_problem: Callable[[str], None] = lambda message: None
        # Counts changes from disk (watcher batches, rescans); open buffers count only their own.
        self.disk_version = 0
        # Per file: (what its import block depends on, that block), see `file_context`.
        self._file_blocks: dict[str, tuple[tuple, PackedContext]] = {}

    # Lifecycle ---------------------------------------------------------------------------------

    def start(self, watch: bool = True, on_progress: Callable[[int, int], None] | None = None,
              on_problem: Callable[[str], None] | None = None) -> None:
        """Index in a background thread and watch the roots; returns at once. `on_problem` hears,
        in words for the user, what went wrong in the background (issue 11 §6)."""
        self._on_problem = on_problem or (lambda message: None)
        if watch:
            self._watcher = Watcher(self.roots, self._on_batch, on_overflow=self._on_overflow)
            self._watcher.start()
        self._thread = threading.Thread(target=self._background, args=(on_progress,),
                                        name="codeflow-index", daemon=True)
        self._thread.start()

    def _background(self, on_progress: Callable[[int, int], None] | None) -> None:
        try:
            self.ws.index_all(on_progress, save=False)
        except Exception as exc:  # a partial index still serves; the user hears what is missing
            self.error = exc
            self._on_problem(f"indexing stopped after {len(self.index)} files ({type(exc).__name__}: {exc}); "
                             "cross-file context comes from those files only")
        self._save_cache()
        self._ready.set()
        if on_progress is not None:  # always a final (total, total), even for an empty root
            on_progress(len(self.index), len(self.index))

    def _save_cache(self) -> None:
        """Save the index cache; a failure costs the next start a full index, nothing more."""
        try:
            self.ws.save_cache()
        except OSError as exc:
            self._on_problem(f"the index cache could not be saved ({exc}); the next start indexes "
                             "the workspace again")

    def _on_batch(self, paths: set[str]) -> None:
        self.ws.apply_batch(paths)
        self.disk_version += 1

    def _on_overflow(self) -> None:
        """The kernel dropped file events (10,000 operations in 1.4 s left 24 of 71 probes wrong,
        issue 12): compare the whole workspace with the index by mtime and size."""
        self._ready.wait()  # the initial index is complete (a rescan before it would race it)
        self.ws.rescan()
        self.rescans += 1
        self.disk_version += 1

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the initial index; False on timeout."""
        return self._ready.wait(timeout)

    def index_now(self) -> None:
        """Index every root synchronously (the CLI's path)."""
        self.ws.index_all()
        self._ready.set()

    def stop(self) -> None:
        """Stop watching and indexing (parse workers included) and save the cache."""
        self.ws.cancel.set()
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._save_cache()

    # Buffers and edits -------------------------------------------------------------------------

    def set_buffer(self, path: Path, text: str) -> bool:
        """An unsaved buffer overrides the file on disk; reparses it. False when it is larger than
        `max_file_bytes`: then it is neither kept nor parsed."""
        key = _abs(path)
        self.ws.set_buffer(key, text)
        return key in self.ws.buffers

    def drop_buffer(self, path: Path) -> None:
        """The buffer was closed: the disk is the truth again."""
        self.ws.drop_buffer(_abs(path))

    def record_edit(self, path: Path, line: int, text: str = "") -> None:
        """Remember an edit at a 0-based line (most recent first)."""
        key = _abs(path)
        if self._edits and self._edits[0] == (key, line):
            return
        self._edits.appendleft((key, line))

    # Queries -----------------------------------------------------------------------------------

    def query(self, path: Path, text: str, line: int, col: int, budget: int,
              count_tokens: Callable[[str], int] | None = None, file_sep: str | None = None,
              skip: frozenset[tuple[str, int, int]] = frozenset(),
              ) -> PackedContext:
        """Context for a cursor at 0-based (line, col) in `text`, packed into `budget` tokens;
        `skip` holds (relative path, first line, last line), 1-based, of snippets shown already."""
        key = _abs(path)
        lines = text.split("\n")
        if not 0 <= line < len(lines):
            raise PositionError(f"line {line + 1} is outside {path} ({len(lines)} lines)")
        if not 0 <= col <= len(lines[line]):
            raise PositionError(f"column {col + 1} is outside line {line + 1} of {path} "
                                f"({len(lines[line])} characters)")
        lang = language_of(key) or ""
        fi, tree = self.ws.buffer_state(key, text)
        self._imports_first(fi)
        sur = surroundings.build(lang, lines, tree, text.encode("utf-8", "surrogatepass"), line, col)
        with self.index.lock:
            cands = rank.gather(rank.RankInput(
                index=self.index, roots=[str(r) for r in self.roots], current=fi, sur=sur,
                lines_of=self.ws.lines_of, windows_of=self.ws.windows_of, rel=self.ws.rel,
                admissible=self.ws.admissible, open_paths=sorted(self.ws.buffers),
                edits=list(self._edits)))
        prompt = (self.ws.rel(key), sur.prompt_start, sur.prompt_end)
        if skip:
            cands = [c for c in cands if (self.ws.rel(c.path), c.start_line + 1, c.end_line + 1) not in skip]
        return pack(cands, budget, self.ws.rel, _comment(lang), file_sep,
                    count_tokens or estimate_tokens, prompt)

    def file_context(self, path: Path, text: str, budget: int, count_tokens: Callable[[str], int] | None = None,
                     file_sep: str | None = None) -> PackedContext:
        """What the file's imports define, packed into `budget` tokens without regard to the cursor
        (issue 16 §1): the same for every position in the file, cached on what it depends on (the
        file's imports, the indexed workspace, the budget)."""
        key = _abs(path)
        fi, _ = self.ws.buffer_state(key, text)
        self._imports_first(fi)
        deps = (tuple(fi.imports), self.disk_version, len(self.index), budget, file_sep, count_tokens is None)
        held = self._file_blocks.get(key)
        if held is not None and held[0] == deps:
            return held[1]
        lang = language_of(key) or ""
        sur = surroundings.build(lang, [""], None, b"", 0, 0)
        with self.index.lock:
            cands = rank.file_candidates(rank.RankInput(
                index=self.index, roots=[str(r) for r in self.roots], current=fi, sur=sur,
                lines_of=self.ws.lines_of, windows_of=self.ws.windows_of, rel=self.ws.rel,
                admissible=self.ws.admissible))
        packed = pack(cands, budget, self.ws.rel, _comment(lang), file_sep, count_tokens or estimate_tokens,
                      (self.ws.rel(key), -1, -1))
        self._file_blocks[key] = (deps, packed)
        return packed

    def _imports_first(self, fi: FileIndex) -> None:
        """While the initial index builds, index what the buffer imports now, ahead of the rest of
        the tree: the first completion must not wait for a full index (issue 16 §3)."""
        if not self._ready.is_set():
            self.ws.index_imports_of(fi)

    def render(self, packed: PackedContext, path: Path, file_sep: str | None = None) -> str:
        """The packed snippets as prompt text, headers in the current file's comment syntax."""
        return render(packed, _comment(language_of(path) or ""), file_sep)

    def definitions_in(self, path: Path) -> list[Definition]:
        """Every indexed definition of a file (functions, classes, methods, types, constants)."""
        fi = self.index.get(_abs(path))
        lines = self.ws.lines_of(_abs(path)) if fi is not None else None
        return [enrich(fi.lang, lines, d) for d in fi.defs] if fi is not None and lines else []

    def function_at(self, path: Path, text: str, line: int) -> Definition | None:
        """The innermost function, method or class around a 0-based line of `text`."""
        key = _abs(path)
        lang = language_of(key)
        if lang is None:
            return None
        _, tree = self.ws.buffer_state(key, text)
        found = definition_at(lang, text.encode("utf-8", "surrogatepass"), tree, line) if tree else None
        return enrich(lang, text.split("\n"), found) if found is not None else None

    def source_of(self, path: str) -> SourceFile | None:
        """An indexed file's lines, language and display path; None when it is gone."""
        fi = self.index.get(path)
        lines = self.ws.lines_of(path)
        if fi is None or lines is None:
            return None
        return SourceFile(lines=lines, language=fi.lang, display=self.ws.rel(path))

    def is_private(self, path: Path) -> bool:
        """Whether a document must stay on this machine: secret or ignored (by its name or its
        resolved target), or outside every root. Its prompts may run locally, never remotely."""
        return self.ws.is_private(_abs(path))

    def lookup(self, path: Path | str, name: str) -> list[tuple[str, Definition]] | None:
        """The workspace definitions a bare `name` in a file refers to, this file's first: in
        Python through its own definitions and imports, else by name. None when the file imports
        `name` from outside the workspace (`from flask import request` is no `def request` in
        tests/, issue 13)."""
        current = _abs(path)
        with self.index.lock:
            fi = self.index.get(current)
            if fi is not None and fi.lang == "python":
                hits = [(t.path, t.defn) for t in self._py_resolver().name(current, name) if t.defn is not None]
                if hits or any(b.local == name for b in fi.imports):
                    return hits or None
            found = [(f.path, d) for f, d in self.index.named(name)]
        found.sort(key=lambda pd: pd[0] != current)
        return found

    def _py_resolver(self) -> PyResolver:
        return PyResolver(self.index, [str(r) for r in self.roots])

    def _refers_to(self, home: str | None, name: str) -> Callable[[str], bool]:
        """Whether a file's uses of `name` can mean the definition in `home`. A top-level Python
        definition is used only where it is defined or imported from (by name or as a module
        attribute); counting by name alone found "11 places" for a name defined all over."""
        fi = self.index.get(home) if home else None
        if fi is None:
            return lambda path: True
        if fi.lang != "python" or any(d.parent for d in self.index.defs_in(home, name)):
            return lambda path: (other := self.index.get(path)) is not None and other.lang == fi.lang
        r = self._py_resolver()

        def keep(path: str) -> bool:
            other = self.index.get(path)
            if other is None or other.lang != "python":
                return False
            if path == home or any(t.path == home for t in r.name(path, name)):
                return True
            # `import models` then `models.name(...)`.
            return any(t.defn is None and t.path == home for b in other.imports for t in r.name(path, b.local))

        return keep

    def callers_of(self, name: str, home: Path | str | None = None) -> list[Usage]:
        """Where `name` is used across the workspace, definitions excluded, for hovers; with
        `home`, the file that defines it, only the uses that can refer to that definition.

        The files are searched when asked (a byte test first, then their lines), which keeps the
        per-file identifier lists out of the index: they cost a third of extraction time."""
        pattern = re.compile(rf"(?<![\w$]){re.escape(name)}(?![\w$])")
        needle = name.encode("utf-8", "surrogatepass")
        out: list[Usage] = []
        with self.index.lock:
            files = sorted(self.index.files)
            refers = self._refers_to(_abs(home) if home is not None else None, name)
        for path in files:
            if not self.ws.contains(path, needle):
                continue
            with self.index.lock:
                if not refers(path):
                    continue
            lines = self.ws.lines_of(path) or []
            def_lines = {d.start_line for d in self.index.defs_in(path, name)}
            for i, text in enumerate(lines):
                if i not in def_lines and pattern.search(text):
                    out.append(Usage(path=self.ws.rel(path), line=i, text=text.strip()[:200]))
                    if len(out) >= MAX_CALLERS:
                        return out
        return out


def _abs(path: Path | str) -> str:
    return os.path.abspath(os.fspath(path))


def _comment(lang: str) -> str:
    spec = SPECS.get(lang)
    return spec.comment if spec else "#"


def parse_position(spec: str) -> tuple[Path, int, int]:
    """Split "FILE:LINE:COL" (1-based) for the CLI; raises PositionError with the reason."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise PositionError(f"expected FILE:LINE:COL, got {spec!r}")
    file, line, col = parts
    try:
        line_no, col_no = int(line), int(col)
    except ValueError:
        raise PositionError(f"LINE and COL must be whole numbers in {spec!r}") from None
    if line_no < 1 or col_no < 1:
        raise PositionError(f"LINE and COL are 1-based, got {line_no}:{col_no} in {spec!r}")
    return Path(file), line_no, col_no
