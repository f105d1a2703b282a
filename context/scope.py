"""Syntax at the cursor, from tree-sitter: does the cursor sit where a block's body begins?"""

from __future__ import annotations

import functools
import importlib

import tree_sitter as ts

# LSP language id -> (grammar module, function returning the language pointer)
GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "javascriptreact": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "typescriptreact": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
    "java": ("tree_sitter_java", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
}
BLOCK_OPENERS = (":", "{", "=>")


@functools.cache
def parser_for(language: str) -> ts.Parser | None:
    """A tree-sitter parser for an LSP language id, or None when no grammar wheel covers it."""
    spec = GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec[0])
    except ImportError:
        return None
    return ts.Parser(ts.Language(getattr(module, spec[1])()))


def opens_block(prefix: str, suffix: str, language: str) -> bool:
    """True when the cursor (between prefix and suffix) is where an empty or new body begins."""
    head = prefix.rstrip()
    if not head:
        return False
    parser = parser_for(language)
    if parser is None:
        return head.endswith(BLOCK_OPENERS)
    data = (prefix + suffix).encode("utf-8", errors="surrogatepass")
    tree = parser.parse(data)
    last = len(head.encode("utf-8", errors="surrogatepass")) - 1
    node: ts.Node | None = tree.root_node.descendant_for_byte_range(last, last + 1)
    while node is not None:
        if node.type == "ERROR" or node.is_missing:
            return head.endswith(BLOCK_OPENERS)
        body = node.child_by_field_name("body")
        if body is not None and (body.start_byte >= last or body.named_child_count == 0):
            return True
        node = node.parent
    return False
