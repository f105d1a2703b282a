"""Name resolution for the non-Python languages: JS/TS relative imports and index files, Go
package directories, and best effort by name elsewhere (Rust, Java, C, C++)."""

from __future__ import annotations

import heapq
import os

from codeflow.context.index import WorkspaceIndex
from codeflow.context.pyresolve import Target
from codeflow.context.symbols import FileIndex

_JS_EXTS = (".ts", ".tsx", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".d.ts")
MAX_BY_NAME = 3
# Past this many defining files a name is too common to look up by scanning them all.
MAX_SCAN_FILES = 64


class Resolver:
    """Resolves chain heads and members of one current file in languages other than Python."""

    def __init__(self, index: WorkspaceIndex, current: FileIndex) -> None:
        self.index = index
        self.fi = current
        self.here = os.path.dirname(current.path)
        self.preferred = self._imported_files()
        # Chains repeat names (`x.size()` on many lines): each lookup is made once per query.
        self._by_name: dict[tuple[str, bool], list[Target]] = {}

    def js_module(self, spec: str) -> str | None:
        """The file a relative JS/TS import specifier names, trying extensions and index files."""
        if not spec.startswith("."):
            return None
        stem = os.path.normpath(os.path.join(self.here, spec))
        for cand in (stem, *(stem + e for e in _JS_EXTS), *(os.path.join(stem, "index" + e) for e in _JS_EXTS)):
            if cand in self.index:
                return cand
        base, ext = os.path.splitext(stem)
        if ext in (".js", ".mjs", ".cjs"):
            # TypeScript sources are imported with the extension of their compiled output.
            for e in (".ts", ".tsx", ".mts", ".cts"):
                if base + e in self.index:
                    return base + e
        return None

    def go_dir(self, import_path: str) -> str | None:
        """The indexed directory whose path ends with the longest suffix of a Go import path."""
        parts = import_path.strip("/").split("/")
        best, best_len = None, 0
        for directory in self.index.dirs():
            tail = directory.split(os.sep)
            n = 0
            while n < min(len(parts), len(tail)) and parts[-1 - n] == tail[-1 - n]:
                n += 1
            if n > best_len or (n == best_len and n and best and len(directory) < len(best)):
                best, best_len = directory, n
        return best if best_len else None

    def _imported_files(self) -> set[str]:
        files: set[str] = set()
        for b in self.fi.imports:
            files.update(self._binding_files(b.module, b.level))
        return files

    def _binding_files(self, module: str, level: int) -> list[str]:
        lang = self.fi.lang
        if lang in ("javascript", "typescript", "tsx"):
            hit = self.js_module(module)
            return [hit] if hit else []
        if lang == "go":
            directory = self.go_dir(module)
            return sorted(self.index.in_dir(directory)) if directory else []
        if lang in ("c", "cpp") and level:
            cand = os.path.normpath(os.path.join(self.here, module))
            return [cand] if cand in self.index else []
        if lang == "java":
            tail = module.replace(".", os.sep)
            return sorted(p for d in self.index.dirs() if d.endswith(tail) for p in self.index.in_dir(d))
        return []

    def head(self, name: str) -> list[Target]:
        """What a bare name at the start of a chain refers to, outside the current file."""
        for b in self.fi.imports:
            if b.local != name:
                continue
            files = self._binding_files(b.module, b.level)
            how = f"import {b.name or '*'} from {b.module}"
            if self.fi.lang == "go":
                directory = self.go_dir(b.module)
                return [Target(directory, None, f'import "{b.module}"')] if directory else []
            if not b.name and files:
                return [Target(files[0], None, how)]
            want = name if b.name in ("default", "") else b.name
            found = [Target(f, d, how) for f in files for d in self.index.defs_in(f, want) if not d.parent]
            if found:
                return found[:MAX_BY_NAME]
        if self.fi.lang == "go":
            same = [Target(p, d, "same package") for p in sorted(self.index.in_dir(self.here))
                    if p != self.fi.path for d in self.index.defs_in(p, name) if not d.parent]
            if same:
                return same[:MAX_BY_NAME]
        return self.by_name(name, members=False)

    def member(self, owner: Target, attr: str) -> list[Target]:
        """`owner.attr` (or `owner::attr`): a package/module member, a class member, or by name."""
        if owner.defn is None:
            files = sorted(self.index.in_dir(owner.path)) if owner.path not in self.index else [owner.path]
            return [Target(f, d, owner.how) for f in files for d in self.index.defs_in(f, attr)
                    if not d.parent][:MAX_BY_NAME]
        if owner.defn.kind in ("class", "interface", "type", "enum", "module"):
            cls = owner.defn.name
            # The owner's own file first: C++ and Java keep members beside their class.
            found = [Target(owner.path, d) for d in self.index.defs_in(owner.path, attr) if d.parent == cls]
            paths = self.index.files_defining(attr)
            if not found and len(paths) <= MAX_SCAN_FILES:
                found = [Target(p, d) for p in sorted(paths) for d in self.index.defs_in(p, attr)
                         if d.parent == cls]
            if found:
                return found[:MAX_BY_NAME]
        return self.by_name(attr, members=True)

    def _hits(self, paths: list[str], name: str, members: bool) -> list[Target]:
        return [Target(p, d, "by name") for p in paths if p != self.fi.path
                for d in self.index.defs_in(p, name) if bool(d.parent) == members]

    def by_name(self, name: str, members: bool) -> list[Target]:
        """Definitions found by name alone, preferring imported files, then this directory."""
        key = (name, members)
        if key not in self._by_name:
            self._by_name[key] = self._find_by_name(name, members)
        return self._by_name[key]

    def _find_by_name(self, name: str, members: bool) -> list[Target]:
        paths = self.index.files_defining(name)
        if len(paths) > MAX_SCAN_FILES:
            # A name defined all over (`size`, `call`): only imports and this directory decide.
            first = self._hits(sorted(p for p in self.preferred if p in paths), name, members)
            if first:
                return first[:MAX_BY_NAME]
            here = self.index.in_dir(self.here)
            near = heapq.nsmallest(MAX_BY_NAME * 3, (p for p in (here if len(here) < len(paths) else paths)
                                                     if p in here and p in paths))
            return self._hits(near, name, members)[:1]
        hits = self._hits(paths, name, members)
        if not hits:
            return []
        hits.sort(key=lambda t: (t.path not in self.preferred, os.path.dirname(t.path) != self.here,
                                 t.path, t.defn.start_line if t.defn else 0))
        if len(hits) > 2 * MAX_BY_NAME and hits[0].path not in self.preferred:
            return hits[:1]
        return hits[:MAX_BY_NAME]
