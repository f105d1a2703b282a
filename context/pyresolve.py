"""Python name resolution: imports down to the definition, and attribute chains by light inference.

Covers absolute and relative imports, packages, `__init__` re-exports, star imports, namespace
packages, src/ layouts and scripts importing their neighbours. Attribute chains follow classes,
their bases, `self.x = ...` attributes, annotations, constructor calls and return annotations.
"""

from __future__ import annotations

import os

import msgspec

from codeflow.context.index import WorkspaceIndex
from codeflow.context.symbols import Definition

MAX_DEPTH = 8
_VALUE_KINDS = ("variable", "constant", "attribute", "property")


class Target(msgspec.Struct, frozen=True):
    """What a name resolved to: a definition in a file, or the file itself (a module)."""

    path: str
    defn: Definition | None
    how: str = ""


class PyResolver:
    """Resolves names and chains against a WorkspaceIndex; cheap to create per query."""

    def __init__(self, index: WorkspaceIndex, roots: list[str]) -> None:
        self.index = index
        self.roots = roots
        self._memo: dict[tuple[str, str], list[Target]] = {}

    # Modules -------------------------------------------------------------------------------

    def _find(self, base: str, parts: list[str]) -> str | None:
        stem = os.path.join(base, *parts)
        for cand in (stem + ".py", stem + ".pyi", os.path.join(stem, "__init__.py"),
                     os.path.join(stem, "__init__.pyi")):
            if cand in self.index:
                return cand
        return None

    def _bases(self, importer: str) -> list[str]:
        here = os.path.dirname(importer)
        top = here
        while os.path.join(top, "__init__.py") in self.index and os.path.dirname(top) != top:
            top = os.path.dirname(top)
        bases = [top, here]
        for root in self.roots:
            bases += [root, os.path.join(root, "src"), os.path.join(root, "lib")]
        return list(dict.fromkeys(bases))

    def _by_suffix(self, importer: str, parts: list[str]) -> str | None:
        found: list[str] = []
        for cand in self.index.py_modules_named(parts[-1]):
            stem = os.path.dirname(cand) if os.path.basename(cand).startswith("__init__.") \
                else os.path.splitext(cand)[0]
            if stem.split(os.sep)[-len(parts):] == parts:
                found.append(cand)
        if not found:
            return None
        return max(found, key=lambda p: (len(os.path.commonpath([p, importer])), -len(p), p))

    def module_file(self, importer: str, module: str, level: int = 0) -> str | None:
        """The file a module name refers to, as imported from `importer`."""
        parts = [p for p in module.split(".") if p]
        if level:
            base = os.path.dirname(importer)
            for _ in range(level - 1):
                base = os.path.dirname(base)
            return self._find(base, parts)
        if not parts:
            return None
        for base in self._bases(importer):
            hit = self._find(base, parts)
            if hit:
                return hit
        return self._by_suffix(importer, parts)

    # Names ---------------------------------------------------------------------------------

    def name(self, path: str, name: str, depth: int = 0) -> list[Target]:
        """What `name` means at the top level of a file: its own definition or an import."""
        key = (path, name)
        if key not in self._memo:
            # A placeholder first: import cycles end here instead of recursing.
            self._memo[key] = []
            self._memo[key] = self._name(path, name, depth)
        return self._memo[key]

    def _name(self, path: str, name: str, depth: int) -> list[Target]:
        fi = self.index.get(path)
        if fi is None or depth > MAX_DEPTH:
            return []
        own = [d for d in self.index.defs_in(path, name) if not d.parent]
        if own:
            rich = [d for d in own if d.kind not in _VALUE_KINDS] or own[-1:]
            return [Target(path, d) for d in rich[-2:]]
        for b in fi.imports:
            if b.local == name:
                found = self._binding(path, b.module, b.name, b.level, depth)
                if found:
                    return found
        for b in fi.imports:
            if b.local == "*":
                mod = self.module_file(path, b.module, b.level)
                if mod and mod != path:
                    found = self.name(mod, name, depth + 1)
                    if found:
                        return found
        return []

    def _binding(self, path: str, module: str, name: str, level: int, depth: int) -> list[Target]:
        how = f"from {'.' * level}{module} import {name}" if name else f"import {module}"
        mod = self.module_file(path, module, level)
        if name:
            found = self.name(mod, name, depth + 1) if mod and mod != path else []
            if found:
                return [msgspec.structs.replace(t, how=how) for t in found]
            sub = self.module_file(path, f"{module}.{name}" if module else name, level)
            return [Target(sub, None, how)] if sub else []
        return [Target(mod, None, how)] if mod else []

    # Members and types -------------------------------------------------------------------------

    def member(self, owner: Target, attr: str, depth: int = 0) -> list[Target]:
        """`owner.attr`: a module member or submodule, or a class member through its bases."""
        if depth > MAX_DEPTH:
            return []
        if owner.defn is None:
            found = self.name(owner.path, attr, depth + 1)
            if not found and os.path.basename(owner.path).startswith("__init__."):
                sub = self._find(os.path.dirname(owner.path), [attr])
                found = [Target(sub, None)] if sub else []
            return found
        if owner.defn.kind != "class":
            return []
        cls = owner.defn
        own = [d for d in self.index.defs_in(owner.path, attr)
               if d.parent == cls.name and cls.start_line <= d.start_line <= cls.end_line]
        if own:
            rich = [d for d in own if d.kind != "attribute"] or own
            return [Target(owner.path, d) for d in rich[:2]]
        for base in cls.bases:
            for bt in self.ref(owner.path, base, depth + 1):
                found = self.member(bt, attr, depth + 1)
                if found:
                    return found
        return []

    def value_types(self, t: Target, called: bool, depth: int = 0) -> list[Target]:
        """The classes or modules whose members `t` (or `t()` when called) exposes."""
        d = t.defn
        if d is None or d.kind == "class":
            return [t]
        if d.kind in ("function", "method"):
            return self.ref(t.path, d.type_ref, depth + 1) if called and d.type_ref else []
        if d.kind in _VALUE_KINDS and d.type_ref:
            return self.ref(t.path, d.type_ref, depth + 1)
        return []

    def ref(self, path: str, ref: str, depth: int = 0) -> list[Target]:
        """Resolve a type reference ("models.User", "make()") in a file's scope to classes/modules."""
        if not ref or depth > MAX_DEPTH:
            return []
        called = ref.endswith("()")
        parts = (ref[:-2] if called else ref).split(".")
        targets = self.name(path, parts[0], depth + 1)
        for attr in parts[1:]:
            owners = [o for t in targets for o in self.value_types(t, False, depth + 1)]
            targets = [m for o in owners[:3] for m in self.member(o, attr, depth + 1)]
        return [v for t in targets[:3] for v in self.value_types(t, called, depth + 1)]

    def chain(self, heads: list[Target], segments: list[tuple[str, bool]]) -> list[list[Target]]:
        """Targets of every segment of `head.a.b()...`, given the head's targets; segment 0 first."""
        per = [heads]
        current = heads
        for i in range(1, len(segments)):
            called = segments[i - 1][1]
            owners = [o for t in current[:3] for o in self.value_types(t, called)]
            current = [m for o in owners[:3] for m in self.member(o, segments[i][0])]
            per.append(current)
        return per
