"""Turn the text of one import statement into the names it binds, per language."""

from __future__ import annotations

import ast
import re

from codeflow.context.symbols import ImportBinding

_STRING = re.compile(r"""["'`]([^"'`]+)["'`]""")
_ALIAS = re.compile(r"^\s*([\w$]+)(?:\s+as\s+([\w$]+))?\s*$")


def python_imports(text: str, line: int) -> list[ImportBinding]:
    """Bindings of a Python `import` or `from ... import` statement."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    out: list[ImportBinding] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    out.append(ImportBinding(local=alias.asname, module=alias.name, line=line))
                    continue
                head = alias.name.split(".")[0]
                out.append(ImportBinding(local=head, module=head, line=line))
                if head != alias.name:
                    # Dotted local: never matched by a bare name, keeps the submodule for signatures.
                    out.append(ImportBinding(local=alias.name, module=alias.name, line=line))
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                out.append(ImportBinding(local=alias.asname or alias.name, module=stmt.module or "",
                                         name=alias.name, level=stmt.level, line=line))
    return out


def _js_clause(clause: str, module: str, line: int) -> list[ImportBinding]:
    out: list[ImportBinding] = []
    clause = clause.strip()
    named = ""
    if "{" in clause:
        head, _, rest = clause.partition("{")
        named, _, _ = rest.partition("}")
        clause = head
    for part in clause.split(","):
        part = part.strip()
        if part.startswith("*"):
            local = part.split()[-1]
            out.append(ImportBinding(local=local, module=module, line=line))
        elif part and part != "type":
            out.append(ImportBinding(local=part.split()[-1], module=module, name="default", line=line))
    for part in named.split(","):
        part = part.replace("type ", "").replace(":", " as ").strip()
        match = _ALIAS.match(part)
        if match:
            name, local = match.group(1), match.group(2) or match.group(1)
            out.append(ImportBinding(local=local, module=module, name=name, line=line))
    return out


def js_imports(text: str, line: int) -> list[ImportBinding]:
    """Bindings of an ES `import` statement or a `const x = require("m")` declaration."""
    strings = _STRING.findall(text)
    if not strings:
        return []
    module = strings[-1]
    if "require" in text and not text.lstrip().startswith("import"):
        lhs = text.split("=", 1)[0]
        lhs = re.sub(r"^\s*(const|let|var)\s+", "", lhs)
        return _js_clause(lhs.replace("{", "{ ").strip() if "{" in lhs else f"* as {lhs.strip()}",
                          module, line)
    head = text.lstrip()[len("import"):]
    if " from " not in head and "from" not in head.split():
        return [ImportBinding(local="", module=module, line=line)]
    clause = head.rsplit("from", 1)[0]
    return _js_clause(clause, module, line)


def go_import(alias: str, path: str, line: int) -> ImportBinding:
    """A Go import spec: the package name defaults to the last path element."""
    path = path.strip('"`')
    local = alias or path.rstrip("/").rsplit("/", 1)[-1]
    return ImportBinding(local=local, module=path, line=line)


def rust_imports(text: str, line: int) -> list[ImportBinding]:
    """Bindings of a Rust `use` declaration, one level of braces deep."""
    body = re.sub(r"^\s*(pub(\([^)]*\))?\s+)?use\s+", "", text).rstrip().rstrip(";")
    prefix, _, group = body.partition("{")
    items = group.rstrip("}").split(",") if group else [prefix.rsplit("::", 1)[-1]]
    module = prefix.rstrip(":") if group else prefix.rsplit("::", 1)[0]
    out: list[ImportBinding] = []
    for item in items:
        item = item.strip()
        if not item or "{" in item:
            continue
        name, _, local = item.partition(" as ")
        name = name.strip().rsplit("::", 1)[-1]
        out.append(ImportBinding(local=(local or name).strip(), module=module, name=name, line=line))
    return out


def java_import(text: str, line: int) -> list[ImportBinding]:
    """A Java import: `import a.b.C;` binds C; `import a.b.*;` binds everything in a.b."""
    body = re.sub(r"^\s*import\s+(static\s+)?", "", text).rstrip().rstrip(";").strip()
    module, _, name = body.rpartition(".")
    return [ImportBinding(local=name, module=module, name=name, line=line)]


def c_include(path_text: str, line: int) -> ImportBinding:
    """A `#include`: quoted paths are relative to the file (level 1), angle brackets are system."""
    level = 1 if path_text.startswith('"') else 0
    return ImportBinding(local="", module=path_text.strip('"<>'), level=level, line=line)
