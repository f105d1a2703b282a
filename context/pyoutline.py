"""Python definitions and imports, read by walking statements instead of running a query.

A query cursor visits every node down to its start depth, function bodies included; this walk
visits only module and class statements (and the `if`/`try`/`with` blocks around them), which
makes extraction a small fraction of the parse on big trees such as the standard library."""

from __future__ import annotations

import tree_sitter as ts

from codeflow.context import imports, pyinfer
from codeflow.context.languages import query
from codeflow.context.symbols import Definition, ImportBinding, definition_of

# Statements whose blocks may hold module- or class-level definitions.
_COMPOUND = frozenset({
    "if_statement", "elif_clause", "else_clause", "try_statement", "except_clause",
    "except_group_clause", "finally_clause", "with_statement", "for_statement", "while_statement",
    "block",
})
_IMPORT_TYPES = ("import_statement", "import_from_statement")
# Bytes that continue a word, so "important" or "reimport" is not the keyword.
_WORD_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Deep enough for any real module; bounds the walk on pathological input.
_MAX_DEPTH = 24


def _text(data: bytes, node: ts.Node) -> str:
    return data[node.start_byte:node.end_byte].decode("utf-8", "replace")


def outline(data: bytes, tree: ts.Tree) -> tuple[list[Definition], list[ImportBinding]]:
    """Definitions outside function bodies, and every import statement (local ones too)."""
    defs: list[Definition] = []
    _walk(data, tree.root_node, "", defs, 0, True)
    return defs, _imports(data, tree)


def _walk(data: bytes, block: ts.Node, parent: str, out: list[Definition], depth: int,
          top: bool) -> None:
    """Definitions among `block`'s statements; `top`: the module or a class body itself."""
    if depth > _MAX_DEPTH:
        return
    for node in block.named_children:
        kind = node.type
        if kind == "decorated_definition":
            node = node.child_by_field_name("definition")
            kind = node.type if node is not None else ""
        if kind in ("function_definition", "class_definition"):
            out.extend(definition(data, node, parent))
            body = node.child_by_field_name("body") if kind == "class_definition" else None
            if body is not None:
                name = node.child_by_field_name("name")
                _walk(data, body, _text(data, name) if name else "", out, depth + 1, True)
        elif kind == "expression_statement" and top:
            _variable(data, node, parent, out)
        elif kind in _COMPOUND:
            _walk(data, node, parent, out, depth + 1, False)


def definition(data: bytes, node: ts.Node, parent: str) -> list[Definition]:
    """The Definition of a function or class node (an `__init__` adds its `self.x` attributes)."""
    name_node = node.child_by_field_name("name")
    if name_node is None:
        return []
    name = _text(data, name_node)
    if node.type == "class_definition":
        args = node.child_by_field_name("superclasses")
        bases = tuple(_text(data, a) for a in (args.named_children if args else ())
                      if a.type in ("identifier", "attribute"))
        return [make(node, name, "class", parent, bases=bases)]
    kind = "method" if parent else "function"
    decorated = node.parent
    if decorated is not None and decorated.type == "decorated_definition" and \
            b"property" in data[decorated.start_byte:node.start_byte]:
        kind = "property"
    returns = node.child_by_field_name("return_type")
    ref = pyinfer.clean_annotation(_text(data, returns)) if returns is not None else ""
    out = [make(node, name, kind, parent, type_ref=ref)]
    if name == "__init__" and parent:
        out.extend(self_attributes(data, node, parent))
    return out


def _variable(data: bytes, stmt: ts.Node, parent: str, out: list[Definition]) -> None:
    node = stmt.named_children[0] if stmt.named_child_count else None
    if node is None or node.type != "assignment":
        return
    left = node.child_by_field_name("left")
    if left is None or left.type != "identifier":
        return
    name = _text(data, left)
    annotation = node.child_by_field_name("type")
    ref = pyinfer.clean_annotation(_text(data, annotation)) if annotation is not None else \
        pyinfer.value_ref(node.child_by_field_name("right"))
    out.append(make(node, name, "constant" if name.isupper() else "variable", parent,
                    type_ref=ref))


def make(node: ts.Node, name: str, kind: str, parent: str, **extra: object,
         ) -> Definition:
    """A Python Definition for a node: public unless `_private` (dunders are public)."""
    exported = not name.startswith("_") or (name.startswith("__") and name.endswith("__"))
    return definition_of(node, name, kind, parent, exported, **extra)


def self_attributes(data: bytes, init: ts.Node, parent: str) -> list[Definition]:
    """`self.x = ...` in `__init__`: attributes with the type their value suggests."""
    params = init.child_by_field_name("parameters")
    first = params.named_children[0] if params is not None and params.named_children else None
    if first is None or first.type != "identifier":
        return []
    out: list[Definition] = []
    seen: set[str] = set()
    found = pyinfer.assignments(init, self_name=_text(data, first))
    cursor = ts.QueryCursor(query("python", "assign"))
    cursor.set_byte_range(init.start_byte, init.end_byte)
    for _, caps in cursor.matches(init):
        if "object" not in caps or "assign" not in caps:
            continue
        attr = _text(data, caps["target"][0])
        if attr in seen:
            continue
        seen.add(attr)
        out.append(make(caps["assign"][0], attr, "attribute", parent,
                        type_ref=found.get(attr, "")))
    return out


def _imports(data: bytes, tree: ts.Tree) -> list[ImportBinding]:
    """Import statements anywhere, found from the word `import` rather than a full tree walk."""
    root = tree.root_node
    out: list[ImportBinding] = []
    seen: set[int] = set()
    at = data.find(b"import")
    while at >= 0:
        end = at + 6
        if (at > 0 and data[at - 1] in _WORD_CHARS) or (end < len(data) and data[end] in _WORD_CHARS):
            at = data.find(b"import", end)
            continue
        node: ts.Node | None = root.descendant_for_byte_range(at, end)
        for _ in range(4):
            if node is None or node.type in _IMPORT_TYPES:
                break
            node = node.parent
        if node is not None and node.type in _IMPORT_TYPES and node.start_byte not in seen:
            seen.add(node.start_byte)
            out.extend(imports.python_imports(_text(data, node), node.start_point[0]))
        at = data.find(b"import", end)
    return out
