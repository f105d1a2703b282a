"""The in-memory workspace index: files, definitions by name, Python modules and directories."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, KeysView

from codeflow.context.symbols import Definition, FileIndex, ImportBinding

_PY_SUFFIXES = (".py", ".pyi")
# Where each name is defined: file -> the index of its definition in `defs`, or a tuple of them
# when the file defines the name more than once (rare; a bare int saves 56 bytes a name).
_Slots = int | tuple[int, ...]
_NO_FILES: dict[str, _Slots] = {}


def py_leaf(path: str) -> str | None:
    """The module name a Python file provides locally: "b" for a/b.py and for a/b/__init__.py."""
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if ext not in _PY_SUFFIXES:
        return None
    return os.path.basename(os.path.dirname(path)) if stem == "__init__" else stem


def intern_file(fi: FileIndex) -> FileIndex:
    """An equal FileIndex whose repeated strings and numbers are shared. Names, kinds, modules and
    line numbers recur all over a workspace, and each fresh copy (a slice of the source, or decoded
    from a worker or the cache) costs 30 to 60 bytes: sharing them took a 10k-file index from 130
    to under 100 MB (issue 16 §3)."""
    return FileIndex(path=fi.path, lang=_s(fi.lang), mtime_ns=fi.mtime_ns, size=fi.size,
                     defs=tuple(map(_def, fi.defs)), imports=tuple(map(_import, fi.imports)),
                     package=_s(fi.package), has_errors=fi.has_errors)


_s = sys.intern
_INTS: dict[int, int] = {}


def _i(n: int) -> int:
    return _INTS.setdefault(n, n) if n < 1 << 20 else n


def _def(d: Definition) -> Definition:
    return Definition(name=_s(d.name), kind=_s(d.kind), start_line=_i(d.start_line),
                      start_col=_i(d.start_col), end_line=_i(d.end_line), end_col=_i(d.end_col),
                      body_line=_i(d.body_line), body_col=_i(d.body_col), signature=d.signature,
                      docstring=d.docstring, parent=_s(d.parent), type_ref=_s(d.type_ref),
                      bases=tuple(map(_s, d.bases)), exported=d.exported)


def _import(b: ImportBinding) -> ImportBinding:
    return ImportBinding(local=_s(b.local), module=_s(b.module), name=_s(b.name), level=b.level,
                         line=_i(b.line))


class WorkspaceIndex:
    """Every indexed file, with the lookup tables retrieval needs; safe to share between threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileIndex] = {}
        self._by_name: dict[str, dict[str, _Slots]] = {}
        self._py_leaf: dict[str, set[str]] = {}
        self._dirs: dict[str, set[str]] = {}
        self.generation = 0

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, path: str) -> bool:
        return path in self.files

    def get(self, path: str) -> FileIndex | None:
        """The FileIndex of an absolute path, if indexed."""
        return self.files.get(path)

    def put(self, fi: FileIndex) -> None:
        """Add or replace one file."""
        with self.lock:
            if fi.path in self.files:
                self.remove(fi.path)
            self.files[fi.path] = fi
            slots: dict[str, list[int]] = {}
            for i, d in enumerate(fi.defs):
                slots.setdefault(d.name, []).append(i)
            for name, idx in slots.items():
                self._by_name.setdefault(name, {})[fi.path] = idx[0] if len(idx) == 1 else tuple(idx)
            leaf = py_leaf(fi.path)
            if leaf is not None:
                self._py_leaf.setdefault(leaf, set()).add(fi.path)
            self._dirs.setdefault(os.path.dirname(fi.path), set()).add(fi.path)
            self.generation += 1

    def remove(self, path: str) -> bool:
        """Forget one file; False when it was not indexed."""
        with self.lock:
            fi = self.files.pop(path, None)
            if fi is None:
                return False
            for d in fi.defs:
                owners = self._by_name.get(d.name)
                if owners is not None:
                    owners.pop(path, None)
                    if not owners:
                        del self._by_name[d.name]
            leaf = py_leaf(path)
            if leaf is not None:
                self._py_leaf.get(leaf, set()).discard(path)
            self._dirs.get(os.path.dirname(path), set()).discard(path)
            self.generation += 1
            return True

    def remove_tree(self, directory: str) -> list[str]:
        """Forget every file under a directory; returns their paths."""
        prefix = directory.rstrip(os.sep) + os.sep
        with self.lock:
            gone = [p for p in self.files if p.startswith(prefix)]
            for p in gone:
                self.remove(p)
        return gone

    def named(self, name: str) -> Iterator[tuple[FileIndex, Definition]]:
        """Every definition called `name`, in any file."""
        owners = self._by_name.get(name)
        if not owners:
            return
        for path, idx in list(owners.items()):
            fi = self.files.get(path)
            if fi is not None:
                for i in _indices(idx):
                    yield fi, fi.defs[i]

    def files_defining(self, name: str) -> KeysView[str]:
        """The files that define `name` (a live view, in no particular order)."""
        return self._by_name.get(name, _NO_FILES).keys()

    def defs_in(self, path: str, name: str) -> list[Definition]:
        """The definitions called `name` in one file."""
        idx = self._by_name.get(name, _NO_FILES).get(path, ())
        fi = self.files.get(path)
        return [fi.defs[i] for i in _indices(idx)] if fi is not None else []

    def py_modules_named(self, leaf: str) -> set[str]:
        """Python files that provide a module or package with this last name."""
        return self._py_leaf.get(leaf, set())

    def in_dir(self, directory: str) -> set[str]:
        """Indexed files directly inside a directory."""
        return self._dirs.get(directory, set())

    def dirs(self) -> list[str]:
        """Every directory that holds an indexed file."""
        return [d for d, files in self._dirs.items() if files]


def _indices(slots: _Slots) -> tuple[int, ...]:
    return (slots,) if isinstance(slots, int) else slots


class OnDemandIndex:
    """A WorkspaceIndex for a resolver while the index builds: a file asked for and not yet
    indexed is indexed there and then by `load` (True when it now is), so the resolver finds what
    a buffer imports before the walk gets there (issue 16 §3)."""

    def __init__(self, index: WorkspaceIndex, load: Callable[[str], bool]) -> None:
        self._index = index
        self._load = load
        self._missing: set[str] = set()

    def __contains__(self, path: str) -> bool:
        if path in self._index:
            return True
        if path in self._missing:
            return False
        if self._load(path):
            return True
        self._missing.add(path)
        return False

    def __getattr__(self, name: str) -> object:
        return getattr(self._index, name)
