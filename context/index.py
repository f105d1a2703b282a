"""The in-memory workspace index: files, definitions by name, Python modules and directories."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, KeysView

from codeflow.context.symbols import Definition, FileIndex

_PY_SUFFIXES = (".py", ".pyi")
_NO_FILES: dict[str, tuple[int, ...]] = {}


def py_leaf(path: str) -> str | None:
    """The module name a Python file provides locally: "b" for a/b.py and for a/b/__init__.py."""
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    if ext not in _PY_SUFFIXES:
        return None
    return os.path.basename(os.path.dirname(path)) if stem == "__init__" else stem


class WorkspaceIndex:
    """Every indexed file, with the lookup tables retrieval needs; safe to share between threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, FileIndex] = {}
        self._by_name: dict[str, dict[str, tuple[int, ...]]] = {}
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
                self._by_name.setdefault(name, {})[fi.path] = tuple(idx)
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
                for i in idx:
                    yield fi, fi.defs[i]

    def files_defining(self, name: str) -> KeysView[str]:
        """The files that define `name` (a live view, in no particular order)."""
        return self._by_name.get(name, _NO_FILES).keys()

    def defs_in(self, path: str, name: str) -> list[Definition]:
        """The definitions called `name` in one file."""
        idx = self._by_name.get(name, {}).get(path, ())
        fi = self.files.get(path)
        return [fi.defs[i] for i in idx] if fi is not None else []

    def py_modules_named(self, leaf: str) -> set[str]:
        """Python files that provide a module or package with this last name."""
        return self._py_leaf.get(leaf, set())

    def in_dir(self, directory: str) -> set[str]:
        """Indexed files directly inside a directory."""
        return self._dirs.get(directory, set())

    def dirs(self) -> list[str]:
        """Every directory that holds an indexed file."""
        return [d for d, files in self._dirs.items() if files]
