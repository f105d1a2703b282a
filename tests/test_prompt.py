"""Prompt layouts from the model's own markers, and the stable prefix window."""

from __future__ import annotations

from codeflow.context.pack import CHARS_PER_TOKEN
from codeflow.context.prompt import PromptFormat, build_prompt, render_chat
from codeflow.lsp_server.assistant.layout import WINDOW_STEP, window
from gguf_factory import CHATML

FIM = PromptFormat(kind="fim", fim_prefix="<P>", fim_suffix="<S>", fim_middle="<M>", eos="<E>")


def test_fim_prompt_puts_context_first_and_uses_the_models_markers() -> None:
    built = build_prompt(FIM, context="# ctx\n", prefix="def f():\n    ", suffix="\n", path="a.py", language="python")
    assert built.kind == "fim"
    assert built.text == "# ctx\n# path: a.py\n<P>def f():\n    <S>\n<M>"
    assert "<E>" in built.stop


def test_fim_with_file_separator_names_files_with_it() -> None:
    fmt = PromptFormat(kind="fim", fim_prefix="<P>", fim_suffix="<S>", fim_middle="<M>", file_sep="<F>")
    built = build_prompt(fmt, context="<F>models.py\nclass User: ...\n", prefix="x", suffix="", path="app.py", language="python")
    assert built.text.startswith("<F>models.py\n")
    assert "<F>app.py\n<P>x<S><M>" in built.text
    assert "<F>" in built.stop


def test_prefix_prompt_ends_with_the_prefix() -> None:
    fmt = PromptFormat(kind="prefix")
    built = build_prompt(fmt, context="// path: lib.js\nexport const a = 1;\n", prefix="const b = ", suffix=";\n", path="main.js", language="javascript")
    assert built.text.endswith("// path: main.js\nconst b = ")
    assert built.stop == ()


def test_chat_prompt_uses_the_template_and_prefills_a_fence() -> None:
    fmt = PromptFormat(kind="chat", chat_template=CHATML, eos="<|im_end|>")
    built = build_prompt(fmt, context="", prefix="def f():\n    ", suffix="\n", path="a.py", language="python")
    assert built.text.startswith("<|im_start|>system\n")
    assert "<CURSOR>" in built.text
    assert built.text.endswith("<|im_start|>assistant\n```python\n")
    assert "```" in built.stop and "<|im_end|>" in built.stop


def test_render_chat_strips_a_leading_bos() -> None:
    fmt = PromptFormat(kind="chat", chat_template="{{ bos_token }}{{ messages[0]['content'] }}", bos="<s>")
    assert render_chat(fmt, [{"role": "user", "content": "hi"}]) == "hi"


def test_window_start_is_stable_while_typing() -> None:
    prefix = "".join(f"line {i} = {i}\n" for i in range(400))
    starts = set()
    for extra in ("", "x", "xy", "xyz = 1\nnext"):
        clipped, _ = window(prefix + extra, "", prefix_tokens=512, suffix_tokens=64)
        starts.add(clipped.split("\n", 1)[0])
        assert len(clipped) <= 512 * 3.2 + 100
    assert len(starts) == 1
    first_line = int(starts.pop().split()[1])
    assert first_line % WINDOW_STEP == 0


def test_a_small_window_keeps_the_lines_above_the_cursor() -> None:
    # A prompt cut to the latency budget has a window of a few lines; rounding its start forward
    # by a 32-line step left only the cursor's line (`    user =`, nothing of `def login():`).
    prefix = "".join(f"line_{i} = {i}\n" for i in range(27)) + "def login():\n    data = request.get_json()\n    user = "
    clipped, _ = window(prefix, "", prefix_tokens=42, suffix_tokens=8)
    assert clipped.startswith(("def login():", "line_")) and "data = request.get_json()" in clipped
    assert len(clipped) <= 42 * CHARS_PER_TOKEN


def test_window_cuts_suffix_at_a_line_boundary() -> None:
    suffix = "".join(f"row{i}\n" for i in range(1000))
    _, clipped = window("x", suffix, prefix_tokens=100, suffix_tokens=10)
    assert clipped.endswith("\n") is False and suffix.startswith(clipped)
    assert len(clipped) <= 10 * CHARS_PER_TOKEN and suffix[len(clipped)] == "\n"
