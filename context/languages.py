"""The languages Codeflow parses: grammar wheels, file extensions, comment syntax and queries."""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources
from pathlib import Path

import msgspec
import tree_sitter as ts

from codeflow.context.errors import ContextError


class LanguageSpec(msgspec.Struct, kw_only=True, frozen=True):
    """How one language is parsed and how its definitions nest."""

    name: str
    comment: str
    # Node types whose definitions belong to a class-like container (methods, fields).
    container_types: tuple[str, ...]
    # Node types inside which definitions are local and not indexed.
    function_types: tuple[str, ...]
    # How deep a definition may start (keeps the query cheap on big files).
    max_depth: int = 6


_C_FUNCS = ("function_definition", "lambda_expression")
SPECS: dict[str, LanguageSpec] = {
    spec.name: spec
    for spec in (
        LanguageSpec(name="python", comment="#", container_types=("class_definition",),
                     function_types=("function_definition", "lambda"), max_depth=5),
        LanguageSpec(name="javascript", comment="//", container_types=("class_declaration", "class"),
                     function_types=("function_declaration", "function_expression", "arrow_function",
                                     "method_definition", "generator_function_declaration")),
        LanguageSpec(name="typescript", comment="//",
                     container_types=("class_declaration", "abstract_class_declaration",
                                      "interface_declaration", "class"),
                     function_types=("function_declaration", "function_expression", "arrow_function",
                                     "method_definition", "generator_function_declaration")),
        LanguageSpec(name="go", comment="//", container_types=(),
                     function_types=("function_declaration", "method_declaration", "func_literal"),
                     max_depth=3),
        LanguageSpec(name="rust", comment="//", container_types=("impl_item", "trait_item"),
                     function_types=("function_item", "closure_expression")),
        LanguageSpec(name="java", comment="//",
                     container_types=("class_declaration", "interface_declaration", "enum_declaration",
                                      "record_declaration"),
                     function_types=("method_declaration", "constructor_declaration", "lambda_expression"),
                     max_depth=8),
        LanguageSpec(name="c", comment="//", container_types=("struct_specifier",),
                     function_types=_C_FUNCS),
        LanguageSpec(name="cpp", comment="//", container_types=("class_specifier", "struct_specifier"),
                     function_types=_C_FUNCS, max_depth=8),
    )
}
SPECS["tsx"] = msgspec.structs.replace(SPECS["typescript"], name="tsx")

# The one file-type table (issue 17 §2): extension -> (the LSP language id editors use, the
# tree-sitter grammar that parses it, or None). Headers (.h) are "c" to editors but parse with the
# C++ grammar, which also reads C; .jsx is "javascriptreact" to editors and JavaScript to parse.
FILE_TYPES: dict[str, tuple[str, str | None]] = {
    ".py": ("python", "python"), ".pyi": ("python", "python"),
    ".js": ("javascript", "javascript"), ".mjs": ("javascript", "javascript"),
    ".cjs": ("javascript", "javascript"), ".jsx": ("javascriptreact", "javascript"),
    ".ts": ("typescript", "typescript"), ".mts": ("typescript", "typescript"),
    ".cts": ("typescript", "typescript"), ".tsx": ("typescriptreact", "tsx"),
    ".go": ("go", "go"), ".rs": ("rust", "rust"), ".java": ("java", "java"), ".c": ("c", "c"),
    ".h": ("c", "cpp"), ".cc": ("cpp", "cpp"), ".cpp": ("cpp", "cpp"), ".cxx": ("cpp", "cpp"),
    ".hpp": ("cpp", "cpp"), ".hh": ("cpp", "cpp"), ".hxx": ("cpp", "cpp"),
    ".rb": ("ruby", None), ".lua": ("lua", None), ".sh": ("shellscript", None),
}
EXTENSIONS: dict[str, str] = {ext: grammar for ext, (_, grammar) in FILE_TYPES.items() if grammar}

# Query files shared between dialects.
_QUERY_FILE = {"tsx": "typescript"}


def language_of(path: str | Path) -> str | None:
    """The language name for a file, from its extension, or None when unsupported."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def language_id_of(path: str | Path) -> str:
    """The LSP language id editors give a file with this extension ("plaintext" when unknown)."""
    known = FILE_TYPES.get(Path(path).suffix.lower())
    return known[0] if known else "plaintext"


@cache
def grammar(lang: str) -> ts.Language:
    """The tree-sitter Language of a grammar wheel (imported on first use)."""
    if lang == "python":
        import tree_sitter_python as mod
    elif lang == "javascript":
        import tree_sitter_javascript as mod
    elif lang in ("typescript", "tsx"):
        import tree_sitter_typescript as tsm

        return ts.Language(tsm.language_tsx() if lang == "tsx" else tsm.language_typescript())
    elif lang == "go":
        import tree_sitter_go as mod
    elif lang == "rust":
        import tree_sitter_rust as mod
    elif lang == "java":
        import tree_sitter_java as mod
    elif lang == "c":
        import tree_sitter_c as mod
    elif lang == "cpp":
        import tree_sitter_cpp as mod
    else:
        raise ContextError(f"no grammar for language {lang!r}")
    return ts.Language(mod.language())


@cache
def query(lang: str, kind: str = "") -> ts.Query:
    """The compiled query `queries/<lang>[-kind].scm`."""
    stem = _QUERY_FILE.get(lang, lang) + (f"-{kind}" if kind else "")
    source = resources.files("codeflow.context").joinpath("queries", f"{stem}.scm").read_text()
    try:
        return ts.Query(grammar(lang), source)
    except Exception as exc:  # tree-sitter raises QueryError subclasses with the offset in the text
        raise ContextError(f"bad query {stem}.scm: {exc}") from exc


_local = threading.local()


def parser(lang: str) -> ts.Parser:
    """A parser for `lang`, one per thread (tree-sitter parsers are not thread-safe)."""
    parsers = _local.__dict__.setdefault("parsers", {})
    if lang not in parsers:
        parsers[lang] = ts.Parser(grammar(lang))
    return parsers[lang]
