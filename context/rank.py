"""Retrieval and ranking: candidate snippets for a cursor, each with a reason and a score.

Tiers, highest first (issue 4, "Retrieval and ranking"): resolved cross-file definitions (3+),
what the current file imports (2+), recent edits and open files (1+), lexical similarity (0+).
Within a tier, the score grows with how close to the cursor the name is used.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable

import msgspec

from codeflow.context import lexical, snippets
from codeflow.context.index import WorkspaceIndex
from codeflow.context.pyresolve import PyResolver, Target
from codeflow.context.resolve import Resolver
from codeflow.context.surroundings import Chain, Surroundings
from codeflow.context.symbols import FileIndex

_BUILTINS = frozenset(dir(builtins))
Windows = list[tuple[int, int, frozenset[str]]]
# Files scanned for similar windows per query: open files first, then linked and sibling files.
LEXICAL_FILES = 8
# A module's outline scores this much below the name that led to it.
OUTLINE_DISCOUNT = 0.2
# Modules of a package whose signatures stand in for an `__init__` that only re-exports them.
MAX_REEXPORTED = 3
# A name found by name alone is used only when at most this many definitions carry it.
MAX_NAME_HITS = 3
# A method's `self.` members come from its class's bases: as likely needed as a name used a few
# lines above (3.0 + distance weight), and worth more than what the file merely imports (2.x).
BASE_CLASS_SCORE = 3.5
# Inside `from x import (...)` the next line names something from x.
IMPORT_AT_CURSOR_SCORE = 3.6


class Candidate(msgspec.Struct, kw_only=True):
    """A snippet before packing; lines are 0-based and inclusive."""

    path: str
    start_line: int
    end_line: int
    text: str
    reason: str
    score: float
    # "definition" (whole text), "outline" (signatures only) or "window" (lexical/edit lines).
    kind: str = "definition"
    # A shorter form the packer may use when `text` does not fit (a class's method signatures).
    short: str = ""


class RankInput(msgspec.Struct, kw_only=True):
    """What ranking reads: the index, the cursor's surroundings and the engine's accessors."""

    index: WorkspaceIndex
    roots: list[str]
    current: FileIndex
    sur: Surroundings
    lines_of: Callable[[str], list[str] | None]
    windows_of: Callable[[str], Windows]
    rel: Callable[[str], str]
    admissible: Callable[[str], bool]
    open_paths: list[str] = []
    edits: list[tuple[str, int]] = []


class _Collector:
    def __init__(self, inp: RankInput) -> None:
        self.inp = inp
        self.found: dict[tuple[str, int, int], Candidate] = {}
        # Module skeletons by path: the same module is often reached through several names.
        self._skeletons: dict[str, tuple[str, int, int]] = {}
        # Python: finds the file of a module name, for the modules a package re-exports.
        self.module_file: Callable[[str, str, int], str | None] | None = None

    def add(self, c: Candidate) -> None:
        key = (c.path, c.start_line, c.end_line)
        old = self.found.get(key)
        if old is None or c.score > old.score:
            self.found[key] = c

    def _module(self, path: str, fi: FileIndex, lines: list[str], score: float, reason: str) -> None:
        if path not in self._skeletons:
            self._skeletons[path] = snippets.module_skeleton(fi.lang, lines, fi)
        text, start, end = self._skeletons[path]
        why = f"public signatures of {self.inp.rel(path)}; {reason}"
        if text and self._better((path, start, end), score, why):
            self.add(Candidate(path=path, start_line=start, end_line=end, text=text, reason=why,
                               score=score, kind="outline"))

    def _reexported(self, init: str, fi: FileIndex) -> list[str]:
        """The modules a package `__init__` imports from, in order, at most a few."""
        out: list[str] = []
        for b in fi.imports:
            mod = self.module_file(init, b.module, b.level) if self.module_file else None
            if mod and mod != init and mod not in out:
                out.append(mod)
                if len(out) == MAX_REEXPORTED:
                    break
        return out

    def _better(self, key: tuple[str, int, int], score: float, reason: str) -> bool:
        """False when `key` is already held at this score or more; raises a held lower score
        in place, so that snippet text is built once per definition."""
        old = self.found.get(key)
        if old is None:
            return True
        if score > old.score:
            self.found[key] = msgspec.structs.replace(old, score=score, reason=reason)
        return False

    def target(self, t: Target, score: float, reason: str) -> None:
        inp = self.inp
        if t.path == inp.current.path or t.path not in inp.index or not inp.admissible(t.path):
            return
        d = t.defn
        if d is not None and not self._better((t.path, d.start_line, d.end_line), score, reason):
            return
        lines = inp.lines_of(t.path)
        fi = inp.index.get(t.path)
        if lines is None or fi is None:
            return
        if d is None:
            self._module(t.path, fi, lines, score - OUTLINE_DISCOUNT, reason)
            if os.path.basename(t.path).startswith("__init__.") and self.module_file is not None:
                # A package's API usually lives in the modules its __init__ re-exports.
                for i, mod in enumerate(self._reexported(t.path, fi)):
                    more, more_lines = inp.index.get(mod), inp.lines_of(mod)
                    if more is not None and more_lines is not None and inp.admissible(mod):
                        self._module(mod, more, more_lines, score - OUTLINE_DISCOUNT - 0.05 * (i + 1),
                                     f"re-exported by {inp.rel(t.path)}; {reason}")
            return
        if d.end_line >= len(lines):
            return
        short = ""
        if d.kind == "class":
            text = snippets.class_skeleton(fi.lang, lines, fi, d)
            whole = d.end_line - d.start_line + 1 <= snippets.FULL_CLASS_LINES
            short = snippets.class_signatures(fi.lang, lines, fi, d)
        else:
            text, whole = snippets.definition_text(fi.lang, lines, d)
        self.add(Candidate(path=t.path, start_line=d.start_line, end_line=d.end_line, text=text,
                           reason=reason, score=score, kind="definition" if whole else "outline",
                           short=short if short != text else ""))


def _where(ch: Chain, cursor: int) -> str:
    if ch.line == cursor:
        return "on the cursor line"
    n = abs(cursor - ch.line)
    return f"used {n} line{'s' * (n != 1)} {'above' if ch.line < cursor else 'below'}"


def _label(ch: Chain, i: int) -> str:
    return ".".join(name for name, _ in ch.segments[:i + 1] if name != "?")


def _python(col: _Collector) -> None:
    inp = col.inp
    r = PyResolver(inp.index, inp.roots)
    col.module_file = r.module_file
    path = inp.current.path
    for ch in inp.sur.chains:
        head = ch.segments[0][0]
        where = _where(ch, inp.sur.line)
        if head == "?":
            heads: list[Target] = []
        elif head in inp.sur.scope:
            heads = r.ref(path, inp.sur.scope[head])
            for t in heads:
                col.target(t, 3.0 + 0.6 * ch.weight, f"type of `{head}`, {where}")
        else:
            heads = r.name(path, head)
            if not heads and head not in _BUILTINS:
                for t in _by_name(inp, head, members=False):
                    col.target(t, 2.5 + 0.5 * ch.weight, f"`{head}` found by name (not imported), {where}")
        per = r.chain(heads, list(ch.segments))
        for i, targets in enumerate(per):
            if i == 0 and head in inp.sur.scope:
                continue
            for t in targets[:3]:
                how = f" ({t.how})" if t.how else ""
                col.target(t, 3.0 + ch.weight, f"definition of `{_label(ch, i)}`{how}, {where}")
        _unresolved_members(col, ch, per, where)
    _python_bases(col, r)
    _python_import_at_cursor(col, r)
    _python_imports(col, r)


def _python_bases(col: _Collector, r: PyResolver) -> None:
    """The base classes of the class around the cursor: the `self.` API a method can use."""
    sur = col.inp.sur
    here = col.inp.current.path
    for base in sur.enclosing_bases:
        segments = [(part, False) for part in base.split(".")]
        per = r.chain(r.name(here, segments[0][0]), segments)
        for t in (per[-1] if per else [])[:1]:
            if t.defn is not None and t.defn.kind == "class":
                col.target(t, BASE_CLASS_SCORE,
                           f"base class `{base}` of `{sur.enclosing_class}`, around the cursor")


def _python_import_at_cursor(col: _Collector, r: PyResolver) -> None:
    """The cursor is in an import statement: what that module offers is what comes next."""
    found = col.inp.sur.import_module
    if found is None or (not found[0] and not found[1]):
        return
    module, level = found
    mod = r.module_file(col.inp.current.path, module, level)
    if mod:
        col.target(Target(mod, None), IMPORT_AT_CURSOR_SCORE + OUTLINE_DISCOUNT,
                   f"module imported at the cursor ({'.' * level}{module})")


def _unresolved_members(col: _Collector, ch: Chain, per: list[list[Target]], where: str) -> None:
    """The first member whose owner's type is unknown: look it up by name if that is unambiguous."""
    for i in range(1, len(ch.segments)):
        if per[i]:
            continue
        if per[i - 1] and per[i - 1][0].defn is not None and per[i - 1][0].defn.kind == "class":
            return
        name = ch.segments[i][0]
        for t in _by_name(col.inp, name, members=True):
            col.target(t, 2.5 + 0.5 * ch.weight, f"member `{name}` found by name (type unknown), {where}")
        return


def _by_name(inp: RankInput, name: str, members: bool) -> list[Target]:
    """Definitions found by name alone, only when the name is nearly unique in the workspace."""
    if len(inp.index.files_defining(name)) > 2 * MAX_NAME_HITS:
        return []
    hits: list[Target] = []
    here = inp.current.path
    for fi, d in inp.index.named(name):
        if (d.parent != "") is members and d.kind != "attribute" and fi.path != here:
            if len(hits) == MAX_NAME_HITS:
                return []
            hits.append(Target(fi.path, d, "by name"))
    return sorted(hits, key=lambda t: t.path)[:2]


def _head_weights(sur: Surroundings) -> dict[str, float]:
    weights: dict[str, float] = {}
    for ch in sur.chains:
        head = ch.segments[0][0]
        weights[head] = max(weights.get(head, 0.0), ch.weight)
    return weights


def _python_imports(col: _Collector, r: PyResolver, weights: dict[str, float] | None = None) -> None:
    weights = _head_weights(col.inp.sur) if weights is None else weights
    path = col.inp.current.path
    for b in col.inp.current.imports:
        if b.local == "*" or not b.local:
            continue
        # Names the file uses often are likely on the next line too, nearby or not.
        w = weights.get(b.local, 0.0)
        stmt = f"from {'.' * b.level}{b.module} import {b.name}" if b.name else f"import {b.module}"
        if "." in b.local:
            mod = r.module_file(path, b.module, b.level)
            targets = [Target(mod, None)] if mod else []
        else:
            targets = r.name(path, b.local)
        for t in targets[:2]:
            col.target(t, 2.0 + 0.5 * w, f"imported here ({stmt})")


def _other(col: _Collector) -> None:
    inp = col.inp
    rr = Resolver(inp.index, inp.current)
    for ch in inp.sur.chains:
        head = ch.segments[0][0]
        where = _where(ch, inp.sur.line)
        current = rr.head(head) if head != "?" else []
        for i, (name, _) in enumerate(ch.segments):
            if i:
                owners = current or [Target("", None, "by name")]
                current = [m for o in owners[:3] for m in
                           (rr.member(o, name) if o.path else rr.by_name(name, members=True))]
            for t in current[:3]:
                how = f" ({t.how})" if t.how else ""
                col.target(t, 3.0 + ch.weight if t.how != "by name" else 2.5 + 0.5 * ch.weight,
                           f"definition of `{_label(ch, i)}`{how}, {where}")
    _other_imports(col, rr)


def _other_imports(col: _Collector, rr: Resolver) -> None:
    for path in sorted(rr.preferred)[:12]:
        col.target(Target(path, None), 2.0, "imported here")


def _recent_and_open(col: _Collector) -> None:
    inp = col.inp
    seen: set[tuple[str, int]] = set()
    for i, (path, line) in enumerate(inp.edits):
        if (path, line // 8) in seen or len(seen) >= 8 or not inp.admissible(path):
            continue
        seen.add((path, line // 8))
        if path == inp.current.path and inp.sur.prompt_start <= line <= inp.sur.prompt_end:
            continue
        lines = inp.lines_of(path)
        if lines is None or line >= len(lines):
            continue
        start, end = max(0, line - 4), min(len(lines) - 1, line + 4)
        col.add(Candidate(path=path, start_line=start, end_line=end, text="\n".join(lines[start:end + 1]),
                          reason=f"recently edited ({i + 1} edit{'s' * (i > 0)} ago)",
                          score=1.0 + 0.5 / (1 + len(seen)), kind="window"))
    for path in inp.open_paths[:10]:
        if path != inp.current.path:
            _windows(col, path, 1, 1.0, 0.5, "open file, similar code")


def _windows(col: _Collector, path: str, limit: int, base: float, scale: float, why: str) -> None:
    inp = col.inp
    if not inp.admissible(path):
        return
    lines = inp.lines_of(path)
    if not lines:
        return
    for score, start, end in lexical.best_windows(inp.sur.query_tokens, inp.windows_of(path), limit):
        if score < 0.05:
            continue
        col.add(Candidate(path=path, start_line=start, end_line=end, text="\n".join(lines[start:end + 1]),
                          reason=f"{why} (jaccard {score:.2f})", score=base + scale * score, kind="window"))


def _lexical(col: _Collector) -> None:
    inp = col.inp
    here = os.path.dirname(inp.current.path)
    near = sorted(p for p in inp.index.in_dir(here) if p != inp.current.path)
    linked = sorted({c.path for c in col.found.values()})
    for path in list(dict.fromkeys([*inp.open_paths, *linked, *near]))[:LEXICAL_FILES]:
        if path != inp.current.path:
            _windows(col, path, 2, 0.0, 1.0, "similar code")


def gather(inp: RankInput) -> list[Candidate]:
    """Every candidate snippet for the cursor, unordered; the packer sorts and fits them."""
    col = _Collector(inp)
    if inp.current.lang == "python":
        _python(col)
    else:
        _other(col)
    _recent_and_open(col)
    _lexical(col)
    return list(col.found.values())


def file_candidates(inp: RankInput) -> list[Candidate]:
    """What the current file's imports define, scored without the cursor (issue 16 §1): the same
    for every position in the file, so a prompt can open with it and keep its KV cache on a jump.
    Changes only when the file's imports or the files they name change."""
    col = _Collector(inp)
    if inp.current.lang == "python":
        r = PyResolver(inp.index, inp.roots)
        col.module_file = r.module_file
        _python_imports(col, r, weights={})
    else:
        _other_imports(col, Resolver(inp.index, inp.current))
    return list(col.found.values())
