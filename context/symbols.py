"""What the index stores per file: definitions and import bindings."""

from __future__ import annotations

import msgspec
import tree_sitter as ts


# gc=False on the index structs: they hold strings, numbers and tuples of one another, never a
# cycle, so the collector need not track the hundred thousand of them a big workspace has.
class Definition(msgspec.Struct, kw_only=True, frozen=True, array_like=True, gc=False):
    """One function, method, class, type or constant; lines and columns are 0-based."""

    name: str
    kind: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    # The line where the body starts, or -1 when the definition has no body (a constant).
    body_line: int = -1
    body_col: int = 0
    # Filled on demand by `describe.enrich` (hover, skeletons); empty in the index.
    signature: str = ""
    docstring: str = ""
    # The enclosing class, struct, impl or interface; "" at the top level.
    parent: str = ""
    # Python: the annotation, or "f()" for a value built by a call; functions: the return type.
    type_ref: str = ""
    bases: tuple[str, ...] = ()
    exported: bool = True


class ImportBinding(msgspec.Struct, kw_only=True, frozen=True, array_like=True, gc=False):
    """A name an import binds: `local` refers to `name` in `module` ("" name: the module itself)."""

    local: str
    module: str
    name: str = ""
    # Python relative-import level (number of leading dots); 0 for absolute.
    level: int = 0
    line: int = 0


class FileIndex(msgspec.Struct, kw_only=True, frozen=True, array_like=True, gc=False):
    """Everything extracted from one file, keyed in the cache by mtime and size."""

    path: str
    lang: str
    mtime_ns: int
    size: int
    defs: tuple[Definition, ...] = ()
    imports: tuple[ImportBinding, ...] = ()
    # Go package name or Java package; "" elsewhere.
    package: str = ""
    # True when tree-sitter reported syntax errors; the index keeps what it could extract.
    has_errors: bool = False


class Usage(msgspec.Struct, kw_only=True, frozen=True):
    """One place a name is used: workspace-relative path, 0-based line, and that line's text."""

    path: str
    line: int
    text: str


def definition_of(node: ts.Node, name: str, kind: str, parent: str, exported: bool,
                  **extra: object) -> Definition:
    """A Definition spanning a tree-sitter node, its body (if any) located."""
    body = node.child_by_field_name("body")
    start, end = node.start_point, node.end_point
    return Definition(
        name=name, kind=kind, start_line=start[0], start_col=start[1], end_line=end[0], end_col=end[1],
        body_line=body.start_point[0] if body is not None else -1,
        body_col=body.start_point[1] if body is not None else 0, parent=parent, exported=exported,
        **extra,  # type: ignore[arg-type]
    )
