"""Golden cases for post-processing: prefix, suffix and raw model output in; shown text out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeflow.context.postprocess import decide_multiline, postprocess

CASES = json.loads((Path(__file__).parent / "data" / "postprocess_golden.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(case: dict) -> None:
    shown = postprocess(
        case["raw"], case["prefix"], case["suffix"], multiline=case["multiline"], language=case["lang"]
    )
    assert shown == case["want"]


def test_enough_golden_cases_in_two_languages() -> None:
    langs = {c["lang"] for c in CASES}
    assert len(CASES) >= 20 and "python" in langs and len(langs) >= 2


@pytest.mark.parametrize(
    ("prefix", "suffix", "lang", "invoked", "want"),
    [
        ("def f(x):\n    ", "\n", "python", False, True),  # empty body
        ("def f(x):\n    y = 1\n    ", "\n    return y\n", "python", False, False),  # mid-body
        ("x = foo(", ")\n", "python", False, False),  # inside a call
        ("x = 1\n", "", "python", False, True),  # end of file: a new definition may follow
        ("x = ", "\n", "python", True, False),  # invoked, but the line has text before the cursor
        ("def f(x):\n    y = 1\n    ", "\n    return y\n", "python", True, True),  # invoked on a blank line
        ("function f() {\n  ", "\n}\n", "javascript", False, True),
        ("function f() {\n  a();\n  ", "\n  b();\n}\n", "javascript", False, False),
        ("fn main() {\n    ", "\n}\n", "rust", False, True),
        ("class A:\n    ", "\n\nx = 1\n", "python", False, True),
    ],
)
def test_decide_multiline(prefix: str, suffix: str, lang: str, invoked: bool, want: bool) -> None:
    assert decide_multiline(prefix, suffix, lang, invoked) is want
