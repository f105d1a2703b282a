"""The indexed workspace: roots and filters, the full and incremental index, open buffers, the
persistent cache and the text of files for snippets."""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from itertools import chain, islice
from pathlib import Path

import tree_sitter as ts

from codeflow.context import cache, lexical, pool
from codeflow.context.errors import UnreadableFileError
from codeflow.context.extract import extract, parse
from codeflow.context.index import OnDemandIndex, WorkspaceIndex, intern_file
from codeflow.context.languages import language_of
from codeflow.context.pool import Parsed, PoolError
from codeflow.context.pyresolve import PyResolver
from codeflow.context.resolve import Resolver
from codeflow.context.symbols import FileIndex, ImportBinding
from codeflow.context.walk import IGNORE_FILES, FileFilter, is_regular, read_source, walk

LRU_FILES = 512
# Relative paths are asked for many times per query; the roots never change, so they stay valid.
REL_CACHE = 200_000
WINDOW_LINES = 20
LEXICAL_WINDOW_STEP = 10
log = logging.getLogger(__name__)


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class Workspace:
    """Files under the roots, indexed; buffers override the disk."""

    def __init__(self, roots: list[Path], exclude: tuple[str, ...], secret_globs: tuple[str, ...],
                 max_file_bytes: int, cache_dir: Path | None, workers: int = 0) -> None:
        self.roots = [r.resolve() for r in roots]
        self.filters = [FileFilter(r, exclude, secret_globs, max_file_bytes) for r in self.roots]
        self.max_file_bytes = max_file_bytes
        self.cache_dir = cache_dir
        # Parse workers for a full index; 0: one per core this process may use.
        self.workers = workers
        # Set to stop a full index (the engine is shutting down); parse workers are stopped too.
        self.cancel = threading.Event()
        self.index = WorkspaceIndex()
        self.buffers: dict[str, str] = {}
        # Open buffers: text, its bytes and tree (the bytes and tree feed incremental reparses).
        self.trees: dict[str, tuple[str, bytes, ts.Tree]] = {}
        self.skipped: dict[str, str] = {}
        self._lines: _Lru = _Lru(LRU_FILES)
        self._windows: _Lru = _Lru(LRU_FILES)
        self._saved_generation = -1
        self._admissible: dict[str, bool] = {}
        self._rel: dict[str, str] = {}
        self._imports_done: dict[str, tuple[ImportBinding, ...]] = {}
        self._lock = threading.RLock()

    # Paths -----------------------------------------------------------------------------------

    def filter_for(self, path: str) -> FileFilter | None:
        """The filter of the innermost root that holds `path`."""
        best = None
        for flt in self.filters:
            root = str(flt.root)
            if (path == root or path.startswith(root + os.sep)) and (
                    best is None or len(root) > len(str(best.root))):
                best = flt
        return best

    def admissible(self, path: str) -> bool:
        """Whether the file may be indexed and quoted: inside a root, supported, not ignored/secret."""
        known = self._admissible.get(path)
        if known is None:
            flt = self.filter_for(path)
            known = self._admissible[path] = flt is not None and flt.admissible(Path(path))
        return known

    def is_private(self, path: str) -> bool:
        """Whether a document must never reach a remote endpoint (see `is_private`)."""
        return is_private(self.filters, path)

    def rel(self, path: str) -> str:
        """A path relative to its root, with forward slashes."""
        known = self._rel.get(path)
        if known is None:
            flt = self.filter_for(path)
            known = Path(path).as_posix() if flt is None else \
                os.path.relpath(path, flt.root).replace(os.sep, "/")
            if len(self._rel) < REL_CACHE:
                self._rel[path] = known
        return known

    # Indexing --------------------------------------------------------------------------------

    def index_file(self, path: str, cached: Mapping[str, FileIndex] | None = None) -> FileIndex | None:
        """(Re)index one file from disk unless a buffer holds it; drops it when it became unreadable."""
        if path in self.buffers:
            return self.index.get(path)
        lang = language_of(path)
        try:
            st = os.stat(path)
            hit = cached.get(path) if cached else None
            if hit is not None and hit.mtime_ns == st.st_mtime_ns and hit.size == st.st_size:
                hit = intern_file(hit)
                self.index.put(hit)
                return hit
            data, st = read_source(Path(path), self.max_file_bytes)
        except (UnreadableFileError, OSError) as exc:
            self.skipped[path] = str(exc)
            self.index.remove(path)
            return None
        fi = intern_file(extract(path, lang or "", data, st.st_mtime_ns, st.st_size))
        self.index.put(fi)
        self.skipped.pop(path, None)
        return fi

    def index_all(self, on_progress: Callable[[int, int], None] | None = None, save: bool = True) -> None:
        """Index every root: cached entries whose mtime and size match are reused, the rest parsed
        (in worker processes past `PARALLEL_MIN` files, while the walk goes on); then save the
        cache unless the caller saves it itself. Returns early, the index partial, once `cancel`
        is set."""
        for flt in self.filters:
            progress = _Progress(on_progress)
            cached = cache.load(self.cache_dir, flt.root) if self.cache_dir else {}
            # The generator holds the only reference: the cache is freed once the walk is done.
            todo = self._reuse(walk(flt), cached, progress)
            del cached
            self._parse(todo, progress)
            if self.cancel.is_set():
                break
        if save:
            self.save_cache()
        _trim_heap()

    def _reuse(self, paths: Iterator[Path], cached: Mapping[str, FileIndex], progress: _Progress) -> Iterator[str]:
        """Put the cached entries that are still current as the walk finds them; yields the paths
        left to parse. Tells `progress` the total once the walk is done."""
        for p in paths:
            path = str(p)
            progress.total += 1
            hit = cached.get(path)
            if hit is not None and path not in self.buffers and _stamp(path) == (hit.mtime_ns, hit.size):
                self.index.put(intern_file(hit))
                progress.add(1)
            else:
                yield path
        progress.walked()

    def _parse(self, paths: Iterator[str], progress: _Progress) -> None:
        """Parse files into the index: by worker processes when there are enough of them, else
        (or when the workers cannot start or die) in this process. The workers start once the
        walk has found enough files for each of them, and parse while it goes on."""
        most = self.workers or pool.worker_count()
        head = list(islice(paths, max(pool.PARALLEL_MIN, most * pool.CHUNK)))
        workers = min(most, -(-len(head) // pool.CHUNK))
        if workers > 1 and len(head) >= pool.PARALLEL_MIN:
            try:
                parsers = pool.ParsePool(workers, self.max_file_bytes, self.cancel)
            except PoolError as exc:
                log.warning("%s; indexing the files in one process", exc)
            else:
                with parsers:
                    for parsed in parsers.run(chain(head, paths)):
                        self._merge(parsed)
                        progress.add(len(parsed.files) + len(parsed.skipped))
                head = parsers.leftover
        for path in chain(head, paths):
            if self.cancel.is_set():
                return
            self.index_file(path)
            progress.add(1)

    def _merge(self, parsed: Parsed) -> None:
        """Add a worker's results as `index_file` would have (buffers keep precedence)."""
        for fi in parsed.files:
            if fi.path not in self.buffers:
                self.index.put(intern_file(fi))
                self.skipped.pop(fi.path, None)
        for path, reason in parsed.skipped:
            if path not in self.buffers:
                self.skipped[path] = reason
                self.index.remove(path)

    def index_imports_of(self, fi: FileIndex) -> None:
        """Index the workspace files a buffer's imports name (and their re-exports), found by the
        resolvers on disk: the first completion gets cross-file context while the index builds."""
        if fi.imports == self._imports_done.get(fi.path):
            return
        lazy = OnDemandIndex(self.index, self._load_on_demand)
        with self.index.lock:  # the resolvers iterate index tables the indexing thread changes
            if fi.lang == "python":
                r = PyResolver(lazy, [str(root) for root in self.roots])  # type: ignore[arg-type]
                for b in fi.imports:
                    if b.local == "*":
                        r.module_file(fi.path, b.module, b.level)
                    else:
                        r.name(fi.path, b.local)
            else:
                Resolver(lazy, fi)  # type: ignore[arg-type]  (resolves every import as it starts)
        self._imports_done[fi.path] = fi.imports

    def _load_on_demand(self, path: str) -> bool:
        if not os.path.isfile(path) or not self.admissible(path):
            return False
        return self.index_file(path) is not None

    def save_cache(self) -> None:
        """Write the cache of each root if the index changed since the last save."""
        if self.cache_dir is None or self._saved_generation == self.index.generation:
            return
        with self.index.lock:
            files = [fi for p, fi in self.index.files.items() if p not in self.buffers]
            generation = self.index.generation
        for flt in self.filters:
            prefix = str(flt.root) + os.sep
            cache.save(self.cache_dir, flt.root, [fi for fi in files if fi.path.startswith(prefix)])
        self._saved_generation = generation
        _trim_heap()  # the encoded cache was as large as the file

    def rescan(self) -> int:
        """After lost watch events: reindex the files whose mtime or size differ from the index,
        add new ones, drop vanished ones. Returns how many changed; unchanged files cost a stat."""
        with self.index.lock:
            known = {p: (fi.mtime_ns, fi.size) for p, fi in self.index.files.items()}
        seen: set[str] = set()
        changed = 0
        for flt in self.filters:
            for p in walk(flt):
                path = str(p)
                seen.add(path)
                if path not in self.buffers and known.get(path) != _stamp(path):
                    self.index_file(path)
                    changed += 1
        for path in known.keys() - seen:
            if path not in self.buffers:
                self.index.remove(path)
                changed += 1
        self._lines.clear()
        self._windows.clear()
        return changed

    def apply_batch(self, paths: set[str]) -> None:
        """Bring the index up to date with a batch of changed paths (files or directories)."""
        for path in sorted(paths):
            flt = self.filter_for(path)
            if flt is None:
                continue
            if os.path.basename(path) in IGNORE_FILES:
                flt.forget_ignores(Path(path).parent)
                self._admissible.clear()
            if os.path.isdir(path):
                if not flt.ignored(Path(path), is_dir=True):
                    for p in walk_under(flt, Path(path)):
                        self.index_file(str(p))
            elif os.path.isfile(path) and flt.admissible(Path(path)):
                self.index_file(path)
            elif path not in self.buffers:
                self.index.remove(path)
                self.index.remove_tree(path)
            self._lines.pop(path, None)
            self._windows.pop(path, None)

    # Buffers ---------------------------------------------------------------------------------

    def oversized(self, text: str) -> bool:
        """Whether a buffer is past `max_file_bytes`, the limit files on disk have too.

        Open buffers had none: a 7.1 MB file grew the server by 436 MB (its tree-sitter tree and
        copies of its text), a 50 MB one to 2 GB, and every reparse held the GIL (issue 12)."""
        if len(text) > self.max_file_bytes:  # characters: a lower bound of the UTF-8 size
            return True
        return len(text) * 4 > self.max_file_bytes and \
            len(text.encode("utf-8", "surrogatepass")) > self.max_file_bytes

    def set_buffer(self, path: str, text: str) -> tuple[FileIndex, ts.Tree | None]:
        """Make an unsaved buffer override the disk, reparsing it; an oversized one is neither kept
        nor parsed (the file on disk, if indexed, stays as it was)."""
        if self.oversized(text):
            with self._lock:
                self.buffers.pop(path, None)
                self.trees.pop(path, None)
                self._lines.pop(path, None)
                self._windows.pop(path, None)
            return FileIndex(path=path, lang=language_of(path) or "", mtime_ns=-1, size=len(text)), None
        with self._lock:
            self.buffers[path] = text
            self._lines.pop(path, None)
            self._windows.pop(path, None)
            lang = language_of(path) or ""
            data = text.encode("utf-8", "surrogatepass")
            held = self.trees.get(path)
            tree = parse(lang, data, (held[1], held[2]) if held else None) if lang else None
            if tree is not None:
                self.trees[path] = (text, data, tree)
            fi = extract(path, lang, data, -1, len(data), tree) if tree is not None else \
                FileIndex(path=path, lang=lang, mtime_ns=-1, size=len(data))
            if lang and self.admissible(path):
                self.index.put(fi)
            return fi, tree

    def buffer_state(self, path: str, text: str) -> tuple[FileIndex, ts.Tree | None]:
        """The FileIndex and tree of a buffer, reparsed only when the text changed."""
        held = self.trees.get(path)
        if self.buffers.get(path) == text and held is not None and held[0] == text:
            fi = self.index.get(path)
            if fi is not None and fi.mtime_ns == -1:
                return fi, held[2]
        return self.set_buffer(path, text)

    def drop_buffer(self, path: str) -> None:
        """Forget a buffer; the file on disk (if any) takes over again."""
        with self._lock:
            self.buffers.pop(path, None)
            self.trees.pop(path, None)
            self._lines.pop(path, None)
            self._windows.pop(path, None)
            if os.path.isfile(path) and self.admissible(path):
                self.index_file(path)
            else:
                self.index.remove(path)

    # Text ------------------------------------------------------------------------------------

    def lines_of(self, path: str) -> list[str] | None:
        """A file's lines: from its buffer if open, else from disk (cached by mtime and size)."""
        if path in self.buffers:
            return self.buffers[path].split("\n")
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        held = self._lines.get(path)
        if held is not None and held[0] == stamp:
            return held[1]
        try:
            data, _ = read_source(Path(path), self.max_file_bytes)
        except UnreadableFileError:
            return None
        lines = data.decode("utf-8", "replace").split("\n")
        self._lines.put(path, (stamp, lines))
        return lines

    def contains(self, path: str, needle: bytes) -> bool:
        """Whether a file's text (its buffer if open) holds `needle`; False when unreadable."""
        buffer = self.buffers.get(path)
        if buffer is not None:
            return needle in buffer.encode("utf-8", "surrogatepass")
        try:
            data, _ = read_source(Path(path), self.max_file_bytes)
        except UnreadableFileError:
            return False
        return needle in data

    def windows_of(self, path: str) -> list[tuple[int, int, frozenset[str]]]:
        """Lexical windows of a file, cached until its text changes."""
        lines = self.lines_of(path)
        if not lines:
            return []
        held = self._windows.get(path)
        if held is not None and held[0] is lines:
            return held[1]
        wins = lexical.windows(lines, WINDOW_LINES, LEXICAL_WINDOW_STEP)
        if path not in self.buffers:
            self._windows.put(path, (lines, wins))
        return wins


class _Progress:
    """Calls `on_progress(done, total)` every 200 files and at the end, from when the walk is done
    and the total known (the files are parsed while the walk goes on)."""

    def __init__(self, on_progress: Callable[[int, int], None] | None) -> None:
        self.on_progress = on_progress
        self.total = 0
        self.done = 0
        self.known = False

    def add(self, n: int) -> None:
        if self.on_progress is None or n <= 0:
            return
        before, self.done = self.done, self.done + n
        if self.known and (before // 200 != self.done // 200 or self.done >= self.total):
            self.on_progress(min(self.done, self.total), self.total)

    def walked(self) -> None:
        """The walk is done: `total` is final."""
        self.known = True
        if self.on_progress is not None and self.total:
            self.on_progress(self.done, self.total)


def _trim_heap() -> None:
    """Give the heap freed by a full index back to the system. The decoded cache, the workers'
    replies and the saved cache are freed but stay resident under glibc: a warm start held 123 MB
    per 10k files, 79 after the trim (issue 16 §3). Elsewhere (musl, macOS) this does nothing."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _stamp(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) as the index keeps them, or None when the file is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def is_private(filters: list[FileFilter], path: str) -> bool:
    """Whether a document is private: outside every root, or secret or ignored by its name or by
    the real path it resolves to. Its text is never sent to a remote endpoint (issue 11)."""
    named = os.path.abspath(path)
    real = os.path.realpath(named)
    flt = _innermost(filters, real)
    if flt is None:
        return True
    if flt.ignored(Path(real)) or flt.is_secret(Path(named)):
        return True
    by_name = _innermost(filters, named)
    return by_name is not None and by_name.ignored(Path(named))


def private_to(roots: list[Path], path: str, exclude: tuple[str, ...] = (),
               secret_globs: tuple[str, ...] = ()) -> bool:
    """`is_private` without an index (context turned off): filters built for this one question."""
    filters = [FileFilter(r.resolve(), exclude, secret_globs) for r in roots]
    return is_private(filters, path)


def _innermost(filters: list[FileFilter], path: str) -> FileFilter | None:
    best = None
    for flt in filters:
        root = str(flt.root)
        if (path == root or path.startswith(root + os.sep)) and (
                best is None or len(root) > len(str(best.root))):
            best = flt
    return best


def walk_under(flt: FileFilter, directory: Path) -> list[Path]:
    """Admissible files under one directory of a root (for a created or moved-in directory)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not flt.ignored(here / d, is_dir=True)]
        out += [here / n for n in filenames if flt.admissible(here / n) and is_regular(here / n)]
    return out
