"""The context engine on fixture workspaces: Python resolution, ignores and secrets, robustness,
the cache, buffers, packing and rendering."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codeflow.context.engine import ContextEngine, EngineConfig, parse_position
from codeflow.context.errors import PositionError

DATA = Path(__file__).parent / "data" / "context"
SECRET_GLOBS = ("local_secrets.py",)


@pytest.fixture
def pyproj(tmp_path: Path) -> Path:
    root = tmp_path / "pyproj"
    shutil.copytree(DATA / "pyproj", root)
    return root


def _engine(root: Path, tmp_path: Path, **kw: object) -> ContextEngine:
    config = EngineConfig(cache_dir=str(tmp_path / "cache"), secret_globs=SECRET_GLOBS, **kw)  # type: ignore[arg-type]
    engine = ContextEngine([root], config)
    engine.index_now()
    return engine


def _at(engine: ContextEngine, path: Path, needle: str, budget: int = 4000, text: str | None = None):
    text = path.read_text() if text is None else text
    lines = text.split("\n")
    line = next(i for i, s in enumerate(lines) if needle in s)
    return engine.query(path, text, line, len(lines[line]), budget)


def _at_new_file(root: Path, tmp_path: Path, name: str, text: str, line: int, budget: int):
    """Index `root`, then write `text` to `name` there and query at (line, 4) of it."""
    engine = _engine(root, tmp_path)
    path = root / name
    path.write_text(text)
    return engine.query(path, text, line, 4, budget)


def _covers(packed, path: str, line: int) -> bool:
    return any(s.path == path and s.start_line <= line <= s.end_line for s in packed.snippets)


def test_python_imports_reexports_src_layout_and_chains(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    packed = _at(engine, pyproj / "app.py", "return session, total")
    assert _covers(packed, "models.py", 6)            # from models import User
    assert _covers(packed, "services/auth.py", 12)    # re-exported by services/__init__.py
    assert _covers(packed, "src/pkglib/text.py", 1)   # src/ layout
    assert _covers(packed, "services/auth.py", 16)    # self.auth.login via self.auth = AuthService(...)
    assert _covers(packed, "models.py", 36)           # account.balance.add: Account() -> Money() -> add
    assert _covers(packed, "db.py", 12)               # import db as database; database.db.commit()
    reasons = " ".join(s.reason for s in packed.snippets)
    assert "from services import AuthService" in reasons


def test_relative_imports_and_inherited_members(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    auth = pyproj / "services" / "auth.py"
    text = auth.read_text().replace("        return Session()", "        user.save()\n        return Session()")
    packed = _at(engine, auth, "user.save()", text=text)
    assert _covers(packed, "models.py", 6)            # from ..models import User
    assert _covers(packed, "services/repo.py", 5)     # self.repo.find (annotated parameter)
    # user = self.repo.find(...) -> User | None -> User(db.Model) -> Database.Model = _Model -> save
    assert _covers(packed, "db.py", 2)


def test_snippets_carry_reason_score_and_order(pyproj: Path, tmp_path: Path) -> None:
    packed = _at(_engine(pyproj, tmp_path), pyproj / "app.py", "return session, total")
    scores = [s.score for s in packed.snippets]
    assert scores == sorted(scores, reverse=True)
    assert all(s.reason for s in packed.snippets)
    assert all(s.path != "app.py" for s in packed.snippets)


def test_budget_is_respected_and_dropped_explained(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    count = len  # one token per character: a strict, exact counter
    packed = _at(engine, pyproj / "app.py", "return session, total", budget=400)
    small = engine.query(pyproj / "app.py", (pyproj / "app.py").read_text(), 18, 8, 300, count_tokens=count)
    assert small.used <= 300
    assert sum(len(engine.render(small, pyproj / "app.py")) for _ in [0]) == small.used
    assert any(d.reason.startswith("over budget") for d in small.dropped)
    assert packed.used <= 400


def test_render_headers_and_file_separator(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    packed = _at(engine, pyproj / "app.py", "return session, total", budget=600)
    text = engine.render(packed, pyproj / "app.py")
    assert text.startswith(f"# path: {packed.snippets[0].path}\n")
    assert text == engine.render(packed, pyproj / "app.py")
    sep = engine.render(packed, pyproj / "app.py", file_sep="<|file_sep|>")
    assert sep.startswith(f"<|file_sep|>{packed.snippets[0].path}\n")
    assert "# path:" not in sep
    again = _at(engine, pyproj / "app.py", "return session, total", budget=600)
    assert engine.render(again, pyproj / "app.py") == text


def test_ignored_and_secret_files_never_in_snippets(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    indexed = {engine.ws.rel(p) for p in engine.index.files}
    for rel in ("ignored_dir/hidden.py", "generated_stuff.py", "id_rsa.py", ".env.py", "local_secrets.py"):
        assert rel not in indexed
    app = pyproj / "app.py"
    text = app.read_text() + "\nhidden_helper()\ngenerated_helper()\nrsa_helper()\nsecret_helper()\nAPI_TOKEN\n"
    engine.set_buffer(pyproj / "id_rsa.py", "def rsa_helper():\n    return 1\n")
    engine.record_edit(pyproj / "id_rsa.py", 0, "")
    packed = engine.query(app, text, len(text.split("\n")) - 1, 0, 8000)
    joined = "".join(s.text for s in packed.snippets) + "".join(d.path for d in packed.dropped)
    assert "never in context" not in joined and "rsa_helper" not in joined
    assert packed.snippets  # the rest of the context still comes through


def test_huge_binary_invalid_utf8_and_syntax_errors(pyproj: Path, tmp_path: Path) -> None:
    (pyproj / "huge.py").write_text("X = 1\n" * 50_000)
    (pyproj / "blob.py").write_bytes(b"\x00\x01\x02 def nope(): pass")
    (pyproj / "latin.py").write_bytes(b"def caf\xe9_helper():\n    return '\xe9'\n\ndef plain_helper():\n    pass\n")
    (pyproj / "broken.py").write_text("def broken_helper(:\n    return (\n\nclass Still:\n    pass\n")
    engine = _engine(pyproj, tmp_path, max_file_bytes=100_000)
    assert str(pyproj / "huge.py") not in engine.index and str(pyproj / "blob.py") not in engine.index
    assert "huge.py" in " ".join(engine.ws.skipped) and "binary" in " ".join(engine.ws.skipped.values())
    assert "plain_helper" in {d.name for d in engine.definitions_in(pyproj / "latin.py")}
    assert "Still" in {d.name for d in engine.definitions_in(pyproj / "broken.py")}
    packed = _at(engine, pyproj / "app.py", "return session, total")
    assert packed.snippets


def test_cache_reload_gives_the_same_index(pyproj: Path, tmp_path: Path) -> None:
    first = _engine(pyproj, tmp_path)
    again = ContextEngine([pyproj], EngineConfig(cache_dir=str(tmp_path / "cache"), secret_globs=SECRET_GLOBS))
    calls: list[str] = []
    import codeflow.context.workspace as workspace

    real = workspace.extract
    workspace.extract = lambda *a, **k: calls.append(a[0]) or real(*a, **k)  # type: ignore[assignment]
    try:
        again.index_now()
    finally:
        workspace.extract = real
    assert calls == []  # every file came from the cache
    assert again.index.files == first.index.files
    (pyproj / "db.py").write_text((pyproj / "db.py").read_text() + "\ndef added(): pass\n")
    third = _engine(pyproj, tmp_path)
    assert "added" in {d.name for d in third.definitions_in(pyproj / "db.py")}


def test_buffer_overrides_disk_and_drop_restores(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    models = pyproj / "models.py"
    engine.set_buffer(models, models.read_text() + "\n\ndef brand_new_helper() -> int:\n    return 1\n")
    assert "brand_new_helper" in {d.name for d in engine.definitions_in(models)}
    text = (pyproj / "app.py").read_text() + "\nbrand_new_helper()\n"
    packed = engine.query(pyproj / "app.py", text, len(text.split("\n")) - 2, 0, 4000)
    assert any("brand_new_helper" in s.text for s in packed.snippets)
    engine.drop_buffer(models)
    assert "brand_new_helper" not in {d.name for d in engine.definitions_in(models)}


def test_recent_edits_are_offered(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    engine.record_edit(pyproj / "db.py", 11, "    def commit(self) -> None:")
    packed = engine.query(pyproj / "services" / "repo.py", (pyproj / "services" / "repo.py").read_text(), 0, 0, 4000)
    assert any("recently edited" in s.reason and s.path == "db.py" for s in packed.snippets)


def test_function_at_definitions_and_callers(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    models = pyproj / "models.py"
    fn = engine.function_at(models, models.read_text(), 14)
    assert fn is not None and (fn.name, fn.kind, fn.parent) == ("check_password", "method", "User")
    assert fn.docstring == "Whether the password matches."
    assert engine.function_at(models, models.read_text(), 0) is None
    callers = engine.callers_of("find_by_email")
    assert {(c.path, c.line) for c in callers} >= {("app.py", 14), ("services/repo.py", 5)}
    assert all(c.path != "models.py" or c.line != 17 for c in callers)


@pytest.mark.parametrize("spec", ["app.py", "app.py:0:1", "app.py:1", "app.py:a:b", ":1:1"])
def test_parse_position_rejects_bad_input(spec: str) -> None:
    with pytest.raises(PositionError):
        parse_position(spec)


def test_parse_position_and_bad_cursor(pyproj: Path, tmp_path: Path) -> None:
    assert parse_position("a/b.py:3:7") == (Path("a/b.py"), 3, 7)
    engine = _engine(pyproj, tmp_path)
    with pytest.raises(PositionError):
        engine.query(pyproj / "app.py", "x = 1\n", 5, 0, 100)
    with pytest.raises(PositionError):
        engine.query(pyproj / "app.py", "x = 1\n", 0, 9, 100)


def test_base_class_of_enclosing_class_is_ranked_high(pyproj: Path, tmp_path: Path) -> None:
    engine = _engine(pyproj, tmp_path)
    admin = pyproj / "admin.py"
    # The cursor is far below `class Admin(User)`: the base, not the name's use, explains it.
    admin.write_text("from models import User\n\n\nclass Admin(User):\n    def ban(self) -> None:\n"
                     + "        step = 1\n" * 40 + "        pass\n")
    engine.index_now()
    packed = _at(engine, admin, "        pass", budget=400)
    base = next(s for s in packed.snippets if s.path == "models.py" and s.start_line == 6)
    assert "base class `User` of `Admin`" in base.reason
    assert "def check_password" in base.text
    # A half-typed line breaks the tree; indentation still says which class the cursor is in.
    broken = admin.read_text().replace("        pass\n", "        pass\n\n    def (\n        self,\n")
    lines = broken.split("\n")
    at = lines.index("    def (")
    packed = engine.query(admin, broken, at, 4, 400)
    assert any("base class `User`" in s.reason for s in packed.snippets)


def test_module_of_the_import_at_the_cursor(pyproj: Path, tmp_path: Path) -> None:
    packed = _at_new_file(pyproj, tmp_path, "reexport.py", "from models import (\n    User,\n    \n)\n", 2, 400)
    outline = next(s for s in packed.snippets if "module imported at the cursor (models)" in s.reason)
    assert outline.path == "models.py" and "class Account" in outline.text and "class Money" in outline.text
    assert outline.score > 3.5


def test_names_defined_everywhere_resolve_through_includes(tmp_path: Path) -> None:
    root = tmp_path / "cpp"
    (root / "ops").mkdir(parents=True)
    (root / "src").mkdir()
    for i in range(80):  # more files than a by-name scan looks at
        (root / "ops" / f"op{i}.h").write_text(f"struct Op{i} {{\n  static int call(int x);\n}};\n")
    main = root / "src" / "main.cpp"
    main.write_text('#include "../ops/op5.h"\nint run(int x) {\n  return Op5::call(x) + x;\n}\n')
    engine = _engine(root, tmp_path)
    packed = _at(engine, main, "return Op5::call", budget=2000)
    from_ops = {s.path for s in packed.snippets if s.path.startswith("ops/")}
    assert "ops/op5.h" in from_ops and len(from_ops) <= 2, from_ops


def test_package_import_brings_the_modules_it_reexports(pyproj: Path, tmp_path: Path) -> None:
    packed = _at_new_file(pyproj, tmp_path, "use_services.py", "import services\n\n\ndef go():\n    \n", 4, 2000)
    auth = next(s for s in packed.snippets if s.path == "services/auth.py")
    assert "re-exported by services/__init__.py" in auth.reason and "class AuthService" in auth.text


def test_enclosing_class_by_indentation() -> None:
    from codeflow.context.surroundings import class_by_indent

    lines = ["class A(B, m.C, metaclass=Meta):", "    def f(self):", "        pass", "    ", ""]
    assert class_by_indent(lines, 3, 4) == ("A", ("B", "m.C"))
    assert class_by_indent(lines, 2, 8) == ("A", ("B", "m.C"))
    assert class_by_indent(lines, 4, 0) == ("", ())  # back at the top level
    assert class_by_indent(["def g():", "    x = 1", "    "], 2, 4) == ("", ())
