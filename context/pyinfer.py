"""Light Python type inference: what a name or `self.attr` holds, as a type reference string.

A type reference is a class name or dotted chain ("models.User"), or a call chain ending in "()"
("make_user()") whose return annotation, or class, gives the type. Resolution happens later, in
the scope of the file the reference came from.
"""

from __future__ import annotations

import re

import tree_sitter as ts

from codeflow.context.languages import query

# Wrappers whose first interesting argument is the real type: Optional[User] -> User.
_WRAPPERS = {
    "Optional", "Union", "Annotated", "Final", "ClassVar", "Type", "type", "typing", "t",
    "Awaitable", "Coroutine", "Iterator", "Iterable", "Generator", "AsyncIterator", "None",
}
_IDENT_CHAIN = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*")


def clean_annotation(text: str) -> str:
    """The first real class named in an annotation: "Optional[models.User]" -> "models.User"."""
    for chain in _IDENT_CHAIN.findall(text.strip("'\"")):
        last = chain.rsplit(".", 1)[-1]
        if last not in _WRAPPERS and chain not in ("typing.Optional", "typing.Union"):
            return chain
    return ""


def value_ref(node: ts.Node | None) -> str:
    """A type reference for an assigned value: a call gives "f()", a name or attribute itself."""
    if node is None:
        return ""
    if node.type == "await":
        node = node.named_children[0] if node.named_children else None
        if node is None:
            return ""
    if node.type == "call":
        func = node.child_by_field_name("function")
        if func is not None and func.type in ("identifier", "attribute"):
            return _text(func) + "()"
        return ""
    if node.type in ("identifier", "attribute"):
        return _text(node)
    return ""


def _text(node: ts.Node) -> str:
    return (node.text or b"").decode("utf-8", "replace")


def assignments(node: ts.Node, self_name: str | None = None, before_byte: int | None = None,
                ) -> dict[str, str]:
    """Type references of the names (or `self.<attr>` when self_name is given) assigned in `node`."""
    cursor = ts.QueryCursor(query("python", "assign"))
    cursor.set_byte_range(node.start_byte, before_byte if before_byte is not None else node.end_byte)
    params: dict[str, str] = {}
    found: dict[str, str] = {}
    for _, caps in cursor.matches(node):
        target = caps["target"][0]
        name = _text(target)
        if "param" in caps:
            params[name] = clean_annotation(_text(caps["type"][0]))
            if self_name is None:
                found[name] = params[name]
            continue
        if "with" in caps:
            if self_name is None:
                found[name] = value_ref(caps["value"][0])
            continue
        assign = caps["assign"][0]
        obj = caps.get("object")
        if (self_name is None) != (obj is None) or (obj and _text(obj[0]) != self_name):
            continue
        ref = _assign_ref(assign, params)
        if ref or name not in found:
            found[name] = ref
    return {name: ref for name, ref in found.items() if ref}


def _assign_ref(assign: ts.Node, params: dict[str, str]) -> str:
    annotation = assign.child_by_field_name("type")
    if annotation is not None:
        return clean_annotation(_text(annotation))
    right = assign.child_by_field_name("right")
    ref = value_ref(right)
    # `self.app = app` where the parameter is annotated: the attribute has the parameter's type.
    return params.get(ref, ref) if right is not None and right.type == "identifier" else ref
