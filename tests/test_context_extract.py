"""Definition extraction and import resolution per language, on small fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeflow.context.describe import enrich
from codeflow.context.engine import ContextEngine, EngineConfig
from codeflow.context.extract import extract
from codeflow.context.imports import js_imports, python_imports, rust_imports

DATA = Path(__file__).parent / "data" / "context"


def _defs(rel: str) -> dict[str, list[tuple[str, str]]]:
    path = DATA / rel
    from codeflow.context.languages import language_of

    fi = extract(str(path), language_of(path), path.read_bytes())
    out: dict[str, list[tuple[str, str]]] = {}
    for d in fi.defs:
        out.setdefault(d.name, []).append((d.kind, d.parent))
    return out


@pytest.mark.parametrize(("rel", "expected"), [
    ("pyproj/models.py", {"User": ("class", ""), "check_password": ("method", "User"),
                          "find_by_email": ("method", "User"), "balance": ("attribute", "Account"),
                          "label": ("property", "Account")}),
    ("jsproj/src/lib/math.ts", {"add": ("function", ""), "Circle": ("class", ""), "area": ("method", "Circle"),
                                "Shape": ("interface", ""), "Id": ("type", ""), "Color": ("enum", "")}),
    ("jsproj/src/widgets/index.js", {"makeWidget": ("function", ""), "DEFAULT_SIZE": ("constant", "")}),
    ("goproj/internal/store/store.go", {"Store": ("type", ""), "New": ("function", ""),
                                        "Put": ("method", "Store"), "MaxItems": ("constant", "")}),
    ("rustproj/src/shapes.rs", {"Point": ("class", ""), "norm": ("method", "Point"), "Area": ("interface", ""),
                                "ORIGIN_NAME": ("constant", "")}),
    ("javaproj/com/acme/model/Customer.java", {"Customer": ("class", ""), "getName": ("method", "Customer")}),
    ("cproj/include/vec.h", {"vec": ("class", ""), "vec_push": ("function", ""), "VEC_CAP": ("constant", "")}),
    ("cproj/main.cpp", {"Runner": ("class", ""), "run": ("method", "Runner")}),
])
def test_definitions_per_language(rel: str, expected: dict[str, tuple[str, str]]) -> None:
    found = _defs(rel)
    for name, kind_parent in expected.items():
        assert kind_parent in found.get(name, []), (name, found)


def test_python_signature_docstring_and_types() -> None:
    path = DATA / "pyproj" / "models.py"
    fi = extract(str(path), "python", path.read_bytes())
    lines = path.read_text().split("\n")
    by_name = {d.name: enrich("python", lines, d) for d in fi.defs}
    check = by_name["check_password"]
    assert check.signature == "def check_password(self, password: str) -> bool"
    assert check.docstring == "Whether the password matches."
    assert check.type_ref == "bool"
    assert by_name["User"].bases == ("db.Model",)
    assert by_name["balance"].type_ref == "Money()"
    assert by_name["find_by_email"].type_ref == "User"
    assert (check.start_line, check.end_line) == (12, 14)


def test_comment_docstrings_other_languages() -> None:
    path = DATA / "goproj" / "internal" / "store" / "store.go"
    fi = extract(str(path), "go", path.read_bytes())
    lines = path.read_text().split("\n")
    docs = {d.name: enrich("go", lines, d).docstring for d in fi.defs}
    assert docs["New"] == "// New makes an empty Store."
    sigs = {d.name: enrich("go", lines, d).signature for d in fi.defs}
    assert sigs["Put"] == "func (s *Store) Put(key string, v int)"


def test_import_statement_parsing() -> None:
    binds = python_imports("from ..pkg.mod import (a, b as c)", 3)
    assert [(b.local, b.module, b.name, b.level) for b in binds] == [("a", "pkg.mod", "a", 2),
                                                                    ("c", "pkg.mod", "b", 2)]
    dotted = python_imports("import os.path", 0)
    assert [(b.local, b.module) for b in dotted] == [("os", "os"), ("os.path", "os.path")]
    js = js_imports('import Def, { a, b as c } from "./x"', 0)
    assert [(b.local, b.name) for b in js] == [("Def", "default"), ("a", "a"), ("c", "b")]
    assert [(b.local, b.name) for b in js_imports('const { q } = require("./y")', 0)] == [("q", "q")]
    rust = rust_imports("use crate::shapes::{Point, ORIGIN_NAME as O};", 0)
    assert [(b.local, b.name, b.module) for b in rust] == [("Point", "Point", "crate::shapes"),
                                                           ("O", "ORIGIN_NAME", "crate::shapes")]


def _query(root: str, rel: str, needle: str, budget: int = 4000) -> list[tuple[str, int, int]]:
    engine = ContextEngine([DATA / root], EngineConfig(use_cache=False))
    engine.index_now()
    path = DATA / root / rel
    text = path.read_text()
    line = next(i for i, s in enumerate(text.split("\n")) if needle in s)
    packed = engine.query(path, text, line, len(text.split("\n")[line]), budget)
    return [(s.path, s.start_line, s.end_line) for s in packed.snippets]


@pytest.mark.parametrize(("root", "rel", "needle", "want"), [
    ("jsproj", "src/main.ts", "const total", ["src/lib/math.ts:2", "src/lib/math.ts:10"]),
    ("jsproj", "src/main.ts", "widgets.makeWidget", ["src/widgets/index.js:2"]),
    ("goproj", "main.go", "s.Put", ["internal/store/store.go:9", "helpers.go:3", "internal/store/store.go:14"]),
    ("rustproj", "src/main.rs", "println", ["src/shapes.rs:2", "src/shapes.rs:9"]),
    ("javaproj", "com/acme/App.java", "getName", ["com/acme/model/Customer.java:4",
                                                   "com/acme/model/Customer.java:11"]),
    ("cproj", "main.cpp", "return vec_push", ["include/vec.h:11", "include/vec.h:3"]),
])
def test_cross_file_resolution(root: str, rel: str, needle: str, want: list[str]) -> None:
    got = _query(root, rel, needle)
    for w in want:
        path, line = w.split(":")
        assert any(p == path and a <= int(line) <= b for p, a, b in got), (w, got)


def test_python_outline_walks_blocks_not_function_bodies(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        'NOTE = "import this is not a statement"\n'
        "try:\n"
        "    import fast_json as json\n"
        "except ImportError:\n"
        "    import json\n"
        "if json:\n"
        "    def loads(text): return json.loads(text)\n"
        "class Outer:\n"
        "    LIMIT = 3\n"
        "    if True:\n"
        "        def guarded(self): pass\n"
        "    @property\n"
        "    def size(self): return 1\n"
        "    class Inner:\n"
        "        def deep(self): pass\n"
        "def factory():\n"
        "    from .models import User\n"
        "    class Local:\n"
        "        def hidden(self): pass\n"
        "    helper = 1\n"
        "    return Local\n"
    )
    fi = extract(str(src), "python", src.read_bytes())
    found = {(d.name, d.kind, d.parent) for d in fi.defs}
    assert {("NOTE", "constant", ""), ("loads", "function", ""), ("LIMIT", "constant", "Outer"),
            ("guarded", "method", "Outer"), ("size", "property", "Outer"), ("Inner", "class", "Outer"),
            ("deep", "method", "Inner"), ("factory", "function", "")} <= found
    names = {d.name for d in fi.defs}
    assert not names & {"Local", "hidden", "helper"}
    # Imports inside try blocks and functions count; the word in a string does not.
    assert [(b.local, b.module, b.name, b.level) for b in fi.imports] == [
        ("json", "fast_json", "", 0), ("json", "json", "", 0), ("User", "models", "User", 1)]


def test_incremental_reparse_matches_a_full_parse() -> None:
    import random

    from codeflow.context.extract import changed_span, parse

    assert changed_span(b"abcdef", b"abXdef") == (2, 3, 3)
    assert changed_span(b"aaaa", b"aaaaaa") == (4, 4, 6)  # the suffix never overlaps the prefix
    assert changed_span(b"same", b"same") == (4, 4, 4)
    source = (DATA / "pyproj" / "models.py").read_bytes() * 30  # several blocks long
    rng = random.Random(7)
    data, tree = source, parse("python", source)
    for _ in range(60):
        at = rng.randrange(len(data))
        cut = rng.choice([0, 0, 1, 5, 40])
        insert = rng.choice([b"", b"x", b"\n    y = 1\n", b"def z(", b"\xc3\xa9"])
        new = data[:at] + insert + data[at + cut:]
        tree = parse("python", new, (data, tree))
        assert str(tree.root_node) == str(parse("python", new).root_node)
        data = new
