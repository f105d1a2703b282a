"""What surrounds the cursor: chains of names and calls near it, weighted by distance, and the
enclosing function's local types (Python)."""

from __future__ import annotations

import keyword
import re

import msgspec
import tree_sitter as ts

from codeflow.context import pyinfer

PREFIX_LINES = 40
# How far up the indentation fallback looks for the enclosing class.
MAX_INDENT_SCAN = 3000
SUFFIX_LINES = 20
# Lines of the current file that the completion prompt already shows around the cursor.
PROMPT_PREFIX_LINES = 80
PROMPT_SUFFIX_LINES = 30

_TOKEN = re.compile(r"""(?P<s>"(?:\\.|[^"\\])*"?|'(?:\\.|[^'\\])*'?)|(?P<c>\#.*|//.*)|(?P<i>[A-Za-z_$][\w$]*)"""
                    r"""|(?P<d>\.|::|->)|(?P<o>[(\[])|(?P<x>[)\]])|(?P<z>\S)""")
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {
    "self", "cls", "this", "super", "new", "return", "const", "let", "var", "function", "func",
    "package", "import", "export", "default", "fn", "pub", "use", "mod", "impl", "struct", "enum",
    "interface", "type", "public", "private", "protected", "static", "final", "void", "int",
    "char", "float", "double", "long", "unsigned", "bool", "string", "auto", "typeof", "instanceof",
    "extends", "implements", "throws", "throw", "try", "catch", "switch", "case", "go", "defer",
    "chan", "map", "range", "select", "mut", "ref", "match", "loop", "where", "crate", "include",
    "define", "namespace", "template", "typename", "nil", "null", "undefined", "true", "false",
}
_FUNC_NODES = ("function_definition",)


class Chain(msgspec.Struct, frozen=True):
    """`a.b().c` as segments (name, called), the 0-based line it is on, and its weight."""

    segments: tuple[tuple[str, bool], ...]
    line: int
    weight: float


class Surroundings(msgspec.Struct, kw_only=True):
    """Everything retrieval needs from the current buffer at the cursor."""

    line: int
    chains: list[Chain]
    # Local name -> type reference (Python): parameters, assignments before the cursor, `self`.
    scope: dict[str, str]
    self_name: str = ""
    # Python: the class whose body holds the cursor (methods included), "" outside classes,
    # and the base classes it names ("models.Base" stays dotted).
    enclosing_class: str = ""
    enclosing_bases: tuple[str, ...] = ()
    # Python: (module, relative level) of the `import`/`from ... import` statement at the cursor.
    import_module: tuple[str, int] | None = None
    # Identifiers of the last lines before the cursor, for lexical similarity.
    query_tokens: frozenset[str] = frozenset()
    prompt_start: int = 0
    prompt_end: int = 0


def _weight(line: int, cursor: int) -> float:
    if line == cursor:
        return 1.2
    if line < cursor:
        return 1.0 / (1.0 + (cursor - line) / 6.0)
    return 0.8 / (1.0 + (line - cursor) / 6.0)


def scan_chains(text: str, line_no: int, weight: float) -> list[Chain]:
    """Every chain of names on one line of code, strings and comments skipped."""
    out: list[Chain] = []
    stack: list[list[list]] = []
    cur: list[list] = []
    last = ""

    def flush() -> None:
        nonlocal cur
        if cur and cur[0][0] not in _KEYWORDS or len(cur) > 1:
            out.append(Chain(tuple((n, c) for n, c in cur), line_no, weight))
        cur = []

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "i":
            if last != "d" or not cur:
                flush()
                if last == "d":
                    # A member of something we cannot name (`x[0].attr`): an unknown head.
                    cur.append(["?", False])
            cur.append([m.group(), False])
        elif kind == "d":
            if last not in ("i", "x") or not cur:
                flush()
        elif kind == "o":
            if m.group() == "(" and last == "i" and cur:
                cur[-1][1] = True
            stack.append(cur if m.group() == "(" else [])
            if m.group() == "[":
                flush()
            cur = []
        elif kind == "x":
            flush()
            cur = stack.pop() if stack else []
        else:
            flush()
        last = kind or ""
    flush()
    for pending in stack:
        if pending:
            out.append(Chain(tuple((n, c) for n, c in pending), line_no, weight))
    return [c for c in out if c.segments and c.segments[0][0] not in ("self",) or len(c.segments) > 1]


def collect_chains(lines: list[str], line: int, col: int) -> list[Chain]:
    """Chains from the window around the cursor; the current line is split at the cursor."""
    chains: list[Chain] = []
    for i in range(max(0, line - PREFIX_LINES), min(len(lines), line + SUFFIX_LINES + 1)):
        text = lines[i]
        if i == line:
            chains += scan_chains(text[:col], i, _weight(i, line))
            chains += scan_chains(text[col:], i, 0.9)
        else:
            chains += scan_chains(text, i, _weight(i, line))
    return chains


class PythonScope(msgspec.Struct, kw_only=True):
    """What the tree says at a Python cursor."""

    scope: dict[str, str]
    self_name: str = ""
    enclosing_class: str = ""
    enclosing_bases: tuple[str, ...] = ()
    import_module: tuple[str, int] | None = None


def _node_text(node: ts.Node | None) -> str:
    return (node.text or b"").decode("utf-8", "replace") if node is not None else ""


def _import_module(node: ts.Node) -> tuple[str, int] | None:
    """(module, level) of an import statement node: `from ..a.b import c` gives ("a.b", 2)."""
    if node.type == "import_statement":
        first = node.named_children[0] if node.named_child_count else None
        if first is not None and first.type == "aliased_import":
            first = first.child_by_field_name("name")
        return (_node_text(first), 0) if first is not None else None
    module = node.child_by_field_name("module_name")
    if module is None:
        return None
    if module.type != "relative_import":
        return _node_text(module), 0
    text = _node_text(module)
    dotted = text.lstrip(".")
    return dotted, len(text) - len(dotted)


def python_scope(tree: ts.Tree, data: bytes, byte: int, point: tuple[int, int]) -> PythonScope:
    """Local types at the cursor from the enclosing functions, the name bound to `self`, the
    enclosing class and the import statement the cursor is in."""
    node = tree.root_node.descendant_for_point_range(point, point)
    funcs: list[ts.Node] = []
    self_class = enclosing = ""
    bases: tuple[str, ...] = ()
    imported: tuple[str, int] | None = None
    while node is not None:
        if node.type == "function_definition":
            funcs.append(node)
        elif node.type == "class_definition":
            name = _node_text(node.child_by_field_name("name"))
            if not enclosing:
                enclosing, bases = name, _bases(node.child_by_field_name("superclasses"))
            if len(funcs) == 1 and not self_class:
                self_class = name
        elif node.type in ("import_statement", "import_from_statement") and imported is None:
            imported = _import_module(node)
        node = node.parent
    scope: dict[str, str] = {}
    for fn in reversed(funcs):
        scope.update(pyinfer.assignments(fn, before_byte=min(byte, fn.end_byte)))
    self_name = ""
    if self_class and funcs:
        params = funcs[-1].child_by_field_name("parameters")
        first = params.named_children[0] if params is not None and params.named_children else None
        if first is not None and first.type == "identifier":
            self_name = (first.text or b"").decode()
            scope[self_name] = self_class
    return PythonScope(scope=scope, self_name=self_name, enclosing_class=enclosing,
                       enclosing_bases=bases, import_module=imported)


def _bases(args: ts.Node | None) -> tuple[str, ...]:
    return tuple(_node_text(a) for a in (args.named_children if args is not None else ())
                 if a.type in ("identifier", "attribute"))


def _last_code(lines: list[str], line: int, col: int) -> tuple[int, int]:
    """The last non-blank character before the cursor: the scope the code being typed continues
    (a blank line after a function's last statement lies outside the function's node)."""
    text = lines[line][:col]
    while not text.strip() and line > 0:
        line -= 1
        text = lines[line]
    return line, max(0, len(text.rstrip()) - 1)


_CLASS_LINE = re.compile(r"class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?")
_BASE_NAME = re.compile(r"\s*([A-Za-z_][\w.]*)\s*$")


def class_by_indent(lines: list[str], line: int, col: int) -> tuple[str, tuple[str, ...]]:
    """The class whose body holds the cursor and its bases, judged by indentation: the fallback
    when a half-typed line breaks the tree around the cursor (Python blocks are indentation)."""
    text = lines[line]
    indent = len(text) - len(text.lstrip()) if text.strip() else col
    if indent == 0:
        return "", ()
    for i in range(line - 1, max(-1, line - MAX_INDENT_SCAN), -1):
        above = lines[i]
        stripped = above.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = len(above) - len(stripped)
        if depth < indent:
            found = _CLASS_LINE.match(stripped)
            if found:
                args = (_BASE_NAME.match(a) for a in (found.group(2) or "").split(","))
                return found.group(1), tuple(m.group(1) for m in args if m)
            if depth == 0:
                return "", ()
            indent = depth
    return "", ()


def build(lang: str, lines: list[str], tree: ts.Tree | None, data: bytes, line: int, col: int,
          ) -> Surroundings:
    """The Surroundings of a cursor at 0-based (line, col) in a buffer split into lines."""
    chains = collect_chains(lines, line, col)
    py = PythonScope(scope={})
    if lang == "python" and tree is not None:
        at_line, at_col = _last_code(lines, line, col)
        byte = sum(len(s.encode()) + 1 for s in lines[:line]) + len(lines[line][:col].encode())
        py = python_scope(tree, data, byte, (at_line, len(lines[at_line][:at_col].encode())))
        if not py.enclosing_class and tree.root_node.has_error:
            py.enclosing_class, py.enclosing_bases = class_by_indent(lines, line, col)
    tokens: set[str] = set()
    for text in lines[max(0, line - 20):line + 1]:
        tokens.update(re.findall(r"[A-Za-z_]\w*", text))
    return Surroundings(line=line, chains=chains, scope=py.scope, self_name=py.self_name,
                        enclosing_class=py.enclosing_class, enclosing_bases=py.enclosing_bases,
                        import_module=py.import_module,
                        query_tokens=frozenset(tokens),
                        prompt_start=max(0, line - PROMPT_PREFIX_LINES),
                        prompt_end=line + PROMPT_SUFFIX_LINES)
