"""Parse one file with tree-sitter and extract its definitions and imports."""

from __future__ import annotations

import tree_sitter as ts

from codeflow.context import imports, pyoutline
from codeflow.context.languages import SPECS, LanguageSpec, parser, query
from codeflow.context.symbols import Definition, FileIndex, ImportBinding, definition_of

_BLOCKS = (4096, 256, 16, 1)


def _text(data: bytes, node: ts.Node) -> str:
    return data[node.start_byte:node.end_byte].decode("utf-8", "replace")


def parse(lang: str, data: bytes, old: tuple[bytes, ts.Tree] | None = None) -> ts.Tree:
    """A tree-sitter tree for `data` (never raises on syntax errors). With the previous bytes and
    tree of the same buffer, only the changed region is reparsed (the old tree is left as it was)."""
    if old is None or old[0] == data:
        return parser(lang).parse(data) if old is None else old[1]
    before, tree = old
    start, old_end, new_end = changed_span(before, data)
    edited = tree.copy()
    edited.edit(start_byte=start, old_end_byte=old_end, new_end_byte=new_end,
                start_point=_point(data, start), old_end_point=_point(before, old_end),
                new_end_point=_point(data, new_end))
    return parser(lang).parse(data, edited)


def _point(data: bytes, byte: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, byte)
    return row, byte - (data.rfind(b"\n", 0, byte) + 1)


def changed_span(old: bytes, new: bytes) -> tuple[int, int, int]:
    """(start, old end, new end) of the one region that differs between two texts. The common
    prefix and suffix are measured in shrinking blocks, so a keystroke in a big file costs little."""
    limit = min(len(old), len(new))
    start = 0
    for size in _BLOCKS:
        while start + size <= limit and old[start:start + size] == new[start:start + size]:
            start += size
    room = limit - start  # the common suffix may not reach back into the common prefix
    lo, ln, tail = len(old), len(new), 0
    for size in _BLOCKS:
        while tail + size <= room and old[lo - tail - size:lo - tail] == new[ln - tail - size:ln - tail]:
            tail += size
    return start, lo - tail, ln - tail


def extract(path: str, lang: str, data: bytes, mtime_ns: int = 0, size: int = 0,
            tree: ts.Tree | None = None) -> FileIndex:
    """The FileIndex of one file's bytes."""
    tree = tree or parse(lang, data)
    package = ""
    if lang == "python":
        defs, binds = pyoutline.outline(data, tree)
    else:
        defs, binds, package = _query_outline(lang, data, tree)
    return FileIndex(path=path, lang=lang, mtime_ns=mtime_ns, size=size or len(data),
                     defs=tuple(defs), imports=tuple(binds), package=package,
                     has_errors=tree.root_node.has_error)


def _query_outline(lang: str, data: bytes, tree: ts.Tree,
                   ) -> tuple[list[Definition], list[ImportBinding], str]:
    spec = SPECS[lang]
    cursor = ts.QueryCursor(query(lang))
    cursor.set_max_start_depth(spec.max_depth)
    defs: list[Definition] = []
    binds: list[ImportBinding] = []
    package = ""
    for _, caps in cursor.matches(tree.root_node):
        if "import" in caps or "path" in caps:
            binds.extend(_imports(lang, data, caps))
        elif "package" in caps:
            package = _text(data, caps["package"][0])
        else:
            defs.extend(_definition(spec, data, caps))
    return defs, binds, package


def _imports(lang: str, data: bytes, caps: dict[str, list[ts.Node]]) -> list[ImportBinding]:
    node = caps["import"][0]
    line = node.start_point[0]
    text = _text(data, node)
    if lang in ("javascript", "typescript", "tsx"):
        return imports.js_imports(text, line)
    if lang == "go":
        alias = node.child_by_field_name("name")
        path = node.child_by_field_name("path")
        if path is None:
            return []
        return [imports.go_import(_text(data, alias) if alias else "", _text(data, path), line)]
    if lang == "rust":
        return imports.rust_imports(text, line)
    if lang == "java":
        return imports.java_import(text, line)
    return [imports.c_include(_text(data, caps["path"][0]), line)]


def _container(spec: LanguageSpec, node: ts.Node, data: bytes) -> tuple[str, bool] | None:
    """(enclosing container name, inside one) or None when `node` is local to a function."""
    parent = node.parent
    while parent is not None:
        kind = parent.type
        if kind in spec.function_types:
            return None
        if kind in spec.container_types:
            name = parent.child_by_field_name("name") or parent.child_by_field_name("type")
            return (_text(data, name) if name is not None else "", True)
        parent = parent.parent
    return ("", False)


def _definition(spec: LanguageSpec, data: bytes, caps: dict[str, list[ts.Node]]) -> list[Definition]:
    key = next((k for k in caps if k.startswith("definition.")), None)
    if key is None or "name" not in caps:
        return []
    node = caps[key][0]
    place = _container(spec, node, data)
    if place is None:
        return []
    parent, in_container = place
    kind = key.split(".", 1)[1]
    name = _text(data, caps["name"][0])
    if "receiver" in caps:
        parent = _text(data, caps["receiver"][0]).lstrip("*").split("[", 1)[0].strip()
    if kind == "function" and in_container:
        kind = "method"
    if kind == "variable" and name.isupper():
        kind = "constant"
    return [_make(spec.name, node, name, kind, parent)]


def _make(lang: str, node: ts.Node, name: str, kind: str, parent: str) -> Definition:
    return definition_of(node, name, kind, parent, _exported(lang, name, node))


def _exported(lang: str, name: str, node: ts.Node) -> bool:
    if lang == "go":
        return name[:1].isupper()
    if lang in ("javascript", "typescript", "tsx"):
        parent = node.parent
        return parent is not None and parent.type == "export_statement"
    return True


def _node_name(data: bytes, node: ts.Node) -> str:
    name = node.child_by_field_name("name") or node.child_by_field_name("type")
    decl = node.child_by_field_name("declarator")
    while name is None and decl is not None:
        if decl.type in ("identifier", "field_identifier", "qualified_identifier", "type_identifier"):
            name = decl
        else:
            decl = decl.child_by_field_name("declarator")
    return _text(data, name) if name is not None else ""


def definition_at(lang: str, data: bytes, tree: ts.Tree, line: int) -> Definition | None:
    """The innermost function, method or class whose range holds the 0-based line."""
    spec = SPECS[lang]
    lines = data.split(b"\n")
    if not 0 <= line < len(lines):
        return None
    col = len(lines[line]) - len(lines[line].lstrip())
    node: ts.Node | None = tree.root_node.descendant_for_point_range((line, col), (line, col))
    kinds = (*spec.function_types, *spec.container_types, "method_declaration", "method_definition")
    while node is not None and not (node.type in kinds and _node_name(data, node)):
        node = node.parent
    if node is None:
        return None
    place = _container(spec, node, data)
    parent = place[0] if place else ""
    is_class = node.type in spec.container_types
    kind = "class" if is_class else ("method" if parent else "function")
    if lang == "python":
        return pyoutline.definition(data, node, parent)[0]
    return _make(lang, node, _node_name(data, node), kind, parent)
