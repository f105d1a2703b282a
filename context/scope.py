"""Syntax at the cursor, from tree-sitter: does the cursor sit where a block's body begins?"""

from __future__ import annotations

import tree_sitter as ts

from codeflow.context.errors import ContextError
from codeflow.context.languages import SPECS, parser

# LSP language ids that name a grammar differently from context.languages.
LSP_TO_GRAMMAR = {"javascriptreact": "javascript", "typescriptreact": "tsx"}
BLOCK_OPENERS = (":", "{", "=>")


def parser_for(language: str) -> ts.Parser | None:
    """This thread's tree-sitter parser for an LSP language id, or None without a grammar."""
    name = LSP_TO_GRAMMAR.get(language, language)
    if name not in SPECS:
        return None
    try:
        return parser(name)
    except ContextError:
        return None


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
