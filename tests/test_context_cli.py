"""`codeflow context` through the installed console script: the Flask case and the JSON contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLASK = ROOT / "examples" / "flask_app"
if not (FLASK / "app.py").is_file():
    FLASK = Path(__file__).parent / "data" / "context" / "flask_app"
CODEFLOW = shutil.which("codeflow") or str(Path(sys.executable).with_name("codeflow"))


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CODEFLOW, "context", *args, "--no-cache"], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def _login_cursor() -> tuple[int, int]:
    lines = (FLASK / "app.py").read_text().split("\n")
    start = next(i for i, s in enumerate(lines) if "def login" in s)
    line = next(i for i in range(start + 1, len(lines)) if not lines[i].strip() or lines[i].rstrip().endswith("="))
    return line + 1, len(lines[line]) + 1


def test_flask_login_gets_user_model() -> None:
    line, col = _login_cursor()
    proc = _run(f"{FLASK / 'app.py'}:{line}:{col}", "--workspace", str(FLASK), "--budget", "1024", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["snippets", "dropped", "budget", "used"]
    assert out["budget"] == 1024 and 0 < out["used"] <= 1024
    first = out["snippets"][0]
    assert list(first) == ["path", "start_line", "end_line", "text", "reason", "score"]
    top = out["snippets"][:3]
    assert any(s["path"] == "models.py" and "class User" in s["text"] for s in top), top
    for s in out["snippets"]:
        assert s["start_line"] >= 1 and s["end_line"] >= s["start_line"] and s["reason"]


def test_readable_view() -> None:
    line, col = _login_cursor()
    proc = _run(f"app.py:{line}:{col}", "--workspace", ".", "--budget", "1024", cwd=FLASK)
    assert proc.returncode == 0, proc.stderr
    assert "models.py" in proc.stdout and "class User" in proc.stdout and "tokens" in proc.stdout


@pytest.mark.parametrize("spec", ["app.py", "app.py:0:1", "app.py:x:2", "missing.py:1:1", "app.py:999:1"])
def test_bad_positions_exit_2_without_traceback(spec: str) -> None:
    proc = _run(spec, "--workspace", ".", "--json", cwd=FLASK)
    assert proc.returncode == 2
    assert proc.stderr.startswith("codeflow context:") and "Traceback" not in proc.stderr
    assert proc.stdout == ""
