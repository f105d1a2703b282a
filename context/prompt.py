"""Completion prompts in the model's own format: FIM markers, chat-template hole filling, or
plain prefix continuation. The layout is always context first and the prefix last (the suffix,
when the format has one, is short and bounded), so that llama.cpp's prefix matching reuses the
KV cache from one keystroke to the next.
"""

from __future__ import annotations

from typing import Literal

import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

PromptKind = Literal["fim", "chat", "prefix"]
HOLE = "<CURSOR>"
CHAT_SYSTEM = (
    "You are a code completion engine. The user shows a file with a <CURSOR> marker. Reply with "
    "only the code to insert at <CURSOR>, in one fenced code block, and nothing else."
)
LINE_COMMENT = {
    "python": "#", "ruby": "#", "shellscript": "#", "toml": "#", "yaml": "#", "perl": "#", "r": "#",
    "lua": "--", "sql": "--", "haskell": "--",
}


class PromptFormat(msgspec.Struct, kw_only=True, frozen=True):
    """How to lay out a prompt, read from the model (see quant.backend.ModelInfo)."""

    kind: PromptKind
    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""
    file_sep: str | None = None
    chat_template: str | None = None
    bos: str = ""
    eos: str = ""


class BuiltPrompt(msgspec.Struct, kw_only=True, frozen=True):
    """A rendered prompt and the stop strings that go with it."""

    text: str
    kind: PromptKind
    stop: tuple[str, ...] = ()
    # Text the prompt already ends with that belongs to the answer (a chat prefill).
    prefill: str = ""
    # A chat prompt's (role, content) messages: what a chat endpoint is sent instead of `text`.
    messages: tuple[tuple[str, str], ...] = ()


def comment_prefix(language: str) -> str:
    """The line-comment marker of a language (LSP language id)."""
    return LINE_COMMENT.get(language, "//")


def file_header(path: str, language: str, file_sep: str | None) -> str:
    """The header line that names a file in a prompt."""
    if file_sep:
        return f"{file_sep}{path}\n"
    return f"{comment_prefix(language)} path: {path}\n"


def build_prompt(
    fmt: PromptFormat, *, context: str, prefix: str, suffix: str, path: str, language: str
) -> BuiltPrompt:
    """Render one completion prompt; `context` is already rendered with its own headers."""
    header = file_header(path, language, fmt.file_sep)
    if fmt.kind == "fim":
        # Repo-level layout (Qwen2.5-Coder, StarCoder2): each file after its separator, the
        # current one last, its header before the FIM prefix marker.
        text = f"{context}{header}{fmt.fim_prefix}{prefix}{fmt.fim_suffix}{suffix}{fmt.fim_middle}"
        stops = tuple(s for s in (fmt.file_sep, fmt.fim_prefix, fmt.eos) if s)
        return BuiltPrompt(text=text, kind="fim", stop=stops)
    if fmt.kind == "chat" and fmt.chat_template:
        return _chat_prompt(fmt, context=context, prefix=prefix, suffix=suffix, path=path, language=language)
    return BuiltPrompt(text=f"{context}{header}{prefix}", kind="prefix")


def _chat_prompt(
    fmt: PromptFormat, *, context: str, prefix: str, suffix: str, path: str, language: str
) -> BuiltPrompt:
    user = f"{context}File: {path}\n```{language}\n{prefix}{HOLE}{suffix}\n```"
    messages = [{"role": "system", "content": CHAT_SYSTEM}, {"role": "user", "content": user}]
    rendered = render_chat(fmt, messages)
    # Prefill the fence so small instruct models answer with code straight away.
    prefill = f"```{language}\n"
    stops = ("```",) + ((fmt.eos,) if fmt.eos else ())
    return BuiltPrompt(text=rendered + prefill, kind="chat", stop=stops, prefill=prefill,
                       messages=tuple((m["role"], m["content"]) for m in messages))


def render_chat(fmt: PromptFormat, messages: list[dict[str, str]]) -> str:
    """Apply the model's own Jinja chat template, with the generation prompt added."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise ValueError(message)

    template = env.from_string(fmt.chat_template or "")
    text = template.render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=fmt.bos,
        eos_token=fmt.eos,
        raise_exception=raise_exception,
    )
    # The backend adds BOS itself; a template that starts with it would double it.
    if fmt.bos and text.startswith(fmt.bos):
        text = text[len(fmt.bos):]
    return text
