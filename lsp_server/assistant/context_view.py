"""The context view: the packed context for a cursor as markdown, the one rendering that the
editors show (`codeflow.showContext`'s `markdown`) and `codeflow context` prints (issue 17 §5)."""

from __future__ import annotations

from codeflow.context.languages import language_of
from codeflow.context.pack import PackedContext


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in `text`."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return ticks


def markdown(packed: PackedContext, where: str) -> str:
    """Each snippet with its 1-based lines, reason, score and fenced code, then what was dropped;
    `where` labels the cursor (`app.py:12`)."""
    out = [f"# Codeflow context for {where}", "",
           f"{len(packed.snippets)} snippets, {packed.used} of {packed.budget} tokens used.", ""]
    for s in packed.snippets:
        fence = _fence(s.text)
        out += [f"## {s.path}:{s.start_line}-{s.end_line}", f"{s.reason} (score {s.score:.3f})", "",
                fence + (language_of(s.path) or ""), s.text.removesuffix("\n"), fence, ""]
    if packed.dropped:
        out += ["## Dropped (over budget or filtered)", ""]
        out += [f"- {d.path}:{d.start_line}-{d.end_line} — {d.reason} (score {d.score:.3f})" for d in packed.dropped]
        out.append("")
    return "\n".join(out)
