"""Unit tests of context/edits.py: fenced answers become minimal, syntax-checked edits."""

from __future__ import annotations

import pytest

from codeflow.context.edits import (
    apply_edits,
    check_syntax,
    enclosing_definition,
    extract_code,
    minimal_edits,
    line_span,
    locate_region,
    plan_replacement,
    rebase_plan,
    region_hash,
    region_starts,
    reindent,
)
from codeflow.context.errors import EditRejectedError

DOC = (
    "import os\n"
    "\n"
    "\n"
    "class Store:\n"
    "    def total(self, items):\n"
    "        result = []\n"
    "        for item in items:\n"
    "            result.append(item * 2)\n"
    "        return result\n"
    "\n"
    "    def name(self):\n"
    "        return 'store'\n"
)
COMPREHENSION = "```python\ndef total(self, items):\n    return [item * 2 for item in items]\n```\n"


def test_extract_code_takes_the_longest_fenced_block() -> None:
    answer = "Sure!\n```\nx\n```\nHere is the code:\n```python\ndef f():\n    return 1\n```\nDone."
    assert extract_code(answer) == "def f():\n    return 1\n"


def test_extract_code_with_prefilled_fence_and_no_closing_fence() -> None:
    assert extract_code("def f():\n    pass\n", prefill="```python\n") == "def f():\n    pass\n"
    assert extract_code("no code here") == ""


def test_reindent_moves_code_to_the_region_indentation() -> None:
    code = "def f():\n    return 1\n"
    assert reindent(code, "    def g():\n        pass\n") == "    def f():\n        return 1\n"
    assert reindent("        x = 1\n", "y = 2\n") == "x = 1\n"


def test_minimal_edits_touch_only_changed_lines() -> None:
    old = "a\nb\nc\nd\n"
    new = "a\nB\nc\nd\ne\n"
    edits = minimal_edits(old, new)
    assert [(e.start_line, e.end_line, e.new_text) for e in edits] == [(1, 2, "B\n"), (4, 4, "e\n")]
    assert apply_edits(old, edits) == new


def test_minimal_edits_at_end_without_newline() -> None:
    old = "a\nb"
    new = "a\nc\nd"
    edits = minimal_edits(old, new)
    assert apply_edits(old, edits) == new
    assert edits[0].start_line == 1 and edits[0].end_line == 1 and edits[0].end_col == 1


def test_plan_replacement_reindents_method_and_keeps_the_rest() -> None:
    plan = plan_replacement(DOC, 4, 8, COMPREHENSION, "python")
    assert "        return [item * 2 for item in items]\n" in plan.result
    assert apply_edits(DOC, plan.edits) == plan.result
    assert plan.result.endswith("    def name(self):\n        return 'store'\n")
    # Minimal: the unchanged `def total` line is not part of any edit.
    assert all(e.start_line >= 5 for e in plan.edits)
    assert sum(e.new_text.count("\n") for e in plan.edits) == 1


def test_plan_replacement_rejects_broken_syntax() -> None:
    broken = "```python\ndef total(self, items:\n    return [item * 2 for item\n```"
    with pytest.raises(EditRejectedError, match="does not parse"):
        plan_replacement(DOC, 4, 8, broken, "python")


def test_plan_replacement_rejects_no_code_and_no_change() -> None:
    with pytest.raises(EditRejectedError, match="no code"):
        plan_replacement(DOC, 4, 8, "I would rather not.", "python")
    same = "```python\n" + "".join(DOC.splitlines(keepends=True)[10:12]) + "```"
    with pytest.raises(EditRejectedError, match="no change"):
        plan_replacement(DOC, 10, 11, same, "python")


def test_plan_replacement_rejects_lines_outside_the_document() -> None:
    with pytest.raises(EditRejectedError, match="outside"):
        plan_replacement(DOC, 40, 41, COMPREHENSION, "python")


def test_a_fix_for_a_broken_file_is_accepted_when_it_parses_better() -> None:
    doc = "def f(:\n    return 1\n"
    plan = plan_replacement(doc, 0, 1, "```python\ndef f():\n    return 1\n```", "python")
    assert plan.result == "def f():\n    return 1\n"
    check_syntax("plaintext", "a(", "b)")  # no grammar: nothing to check


def test_crlf_documents_keep_their_line_endings() -> None:
    doc = "def f():\r\n    return 1\r\n\r\nx = 2\r\n"
    plan = plan_replacement(doc, 0, 1, "```python\ndef f():\n    return 2\n```", "python")
    assert plan.result == "def f():\r\n    return 2\r\n\r\nx = 2\r\n"
    assert len(plan.edits) == 1 and plan.edits[0].start_line == 1


def test_typescript_and_enclosing_definition() -> None:
    doc = "function add(a: number, b: number) {\n  return a + b;\n}\n"
    with pytest.raises(EditRejectedError):
        plan_replacement(doc, 0, 2, "```ts\nfunction add(a: number, b: number) {\n  return a +;\n```", "typescript")
    target = enclosing_definition("python", DOC, 6)
    assert target is not None and target.name == "total" and target.start_line == 4 and target.end_line == 8
    assert enclosing_definition("plaintext", DOC, 6) is None


def fingerprint(text: str, start: int, end: int) -> tuple[str, int, int]:
    """(hash, lines, chars) of lines [start, end], as a listed action carries them."""
    region = line_span(text, start, end)
    return region_hash(region), end - start + 1, len(region)


def test_locate_region_follows_lines_that_moved() -> None:
    digest, n_lines, chars = fingerprint(DOC, 4, 8)
    assert locate_region(DOC, digest, n_lines, chars, 4) == 4
    moved = "# one\n# two\n# three\n" + DOC
    assert locate_region(moved, digest, n_lines, chars, 4) == 7
    assert region_starts(moved, digest, 0, chars) == []


def test_locate_region_refuses_an_edited_or_duplicated_region() -> None:
    digest, n_lines, chars = fingerprint(DOC, 4, 8)
    edited = DOC.replace("        result = []\n", "        result = []  # keep\n")
    with pytest.raises(EditRejectedError, match="no longer in the document"):
        locate_region(edited, digest, n_lines, chars, 4)
    twice = DOC + "\n\nclass Other:\n" + line_span(DOC, 4, 8)
    with pytest.raises(EditRejectedError, match="more than once"):
        locate_region(twice, digest, n_lines, chars, 4)


def test_rebase_plan_lands_on_the_moved_region_and_keeps_the_new_lines() -> None:
    plan = plan_replacement(DOC, 4, 8, COMPREHENSION, "python")
    typed = "# my comment\nout = 0\n\n"
    moved = DOC.replace("class Store:\n", typed + "class Store:\n")
    rebased = rebase_plan(plan, DOC, 4, 8, moved, "python")
    assert rebased.result == plan.result.replace("class Store:\n", typed + "class Store:\n")
    assert apply_edits(moved, rebased.edits) == rebased.result
    # The stale plan's offsets on the new text would have hit the user's lines instead.
    assert apply_edits(moved, plan.edits) != rebased.result
    assert all(e.start_line >= 8 for e in rebased.edits)


def test_rebase_plan_refuses_when_the_region_was_edited() -> None:
    plan = plan_replacement(DOC, 4, 8, COMPREHENSION, "python")
    edited = DOC.replace("            result.append(item * 2)\n", "            result.append(item * 3)\n")
    with pytest.raises(EditRejectedError, match="changed since"):
        rebase_plan(plan, DOC, 4, 8, edited, "python")
