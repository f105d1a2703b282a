"""The parts of a completion prompt: the model's prompt format, the prefix and suffix windows,
and the token budgets that share the model's context between them (issue 16 §1)."""

from __future__ import annotations

from codeflow.context.pack import CHARS_PER_TOKEN
from codeflow.context.prompt import PromptFormat
from codeflow.quant.backend import ModelInfo

# The prefix window starts on a multiple of this many lines, so it stays put while typing.
WINDOW_STEP = 32
SPARE_STEP = 256


def prompt_format(info: ModelInfo) -> PromptFormat:
    """The prompt layout the model itself supports."""
    kind = info.prompt_kind
    fim = info.fim
    return PromptFormat(
        kind=kind,
        fim_prefix=fim.prefix if fim else "",
        fim_suffix=fim.suffix if fim else "",
        fim_middle=fim.middle if fim else "",
        file_sep=fim.file_sep if fim else None,
        chat_template=info.chat_template if kind == "chat" else None,
        bos=info.bos or "",
        eos=info.eos or "",
    )


def window_start(prefix: str, prefix_tokens: int) -> int:
    """The first line of the prefix window: as far back as fits the budget, rounded forward to
    a multiple of WINDOW_STEP so that it stays put while the user types; a window of fewer than
    2 * WINDOW_STEP lines rounds to a step of at most half its lines (a prompt cut to the latency
    budget reaches back a few lines, which a 32-line step would all drop)."""
    limit = int(prefix_tokens * CHARS_PER_TOKEN)
    lines = prefix.split("\n")
    start, size = len(lines) - 1, len(lines[-1])
    while start > 0 and size + len(lines[start - 1]) + 1 <= limit:
        start -= 1
        size += len(lines[start]) + 1
    step = WINDOW_STEP
    while step > 1 and 2 * step > len(lines) - 1 - start:
        step //= 2
    if start > 0:
        start = min(len(lines) - 1, -(-start // step) * step)
    return start


def keeps(prefix: str, start: int | None, tokens: int) -> bool:
    """Whether a window may still start at line `start`: the cursor is on or below it and the
    lines from there fit `tokens`."""
    if start is None or start < 0:
        return False
    head = prefix.split("\n", start)  # the last item is the window when the cursor is below start
    return len(head) == start + 1 and len(head[-1]) <= tokens * CHARS_PER_TOKEN


def window(prefix: str, suffix: str, prefix_tokens: int, suffix_tokens: int,
           start: int | None = None) -> tuple[str, str]:
    """Clip prefix and suffix to whole lines within budget; the prefix window starts at `start`
    (default: `window_start`)."""
    limit = int(prefix_tokens * CHARS_PER_TOKEN)
    lines = prefix.split("\n")
    suffix_limit = int(suffix_tokens * CHARS_PER_TOKEN)
    cut = suffix.rfind("\n", 0, suffix_limit) if len(suffix) > suffix_limit else len(suffix)
    if len(lines[-1]) > limit:  # one huge line (minified code, data): keep its end
        return lines[-1][-limit:], suffix[:suffix_limit]
    start = window_start(prefix, prefix_tokens) if start is None else min(start, len(lines) - 1)
    return "\n".join(lines[start:]), suffix[: max(cut, 0)]


def fit_budgets(n_ctx: int, max_tokens: int, context: int, prefix: int, suffix: int) -> tuple[int, int, int]:
    """Shrink the (context, prefix, suffix) token budgets so prompt and answer fit n_ctx."""
    room = max(64, n_ctx - max_tokens - 32)
    suffix = min(suffix, room // 8)
    prefix = min(prefix, room - suffix)
    return max(0, min(context, room - prefix - suffix)), prefix, suffix


def spare_room(prefix: str, suffix: str, prefix_tokens: int, suffix_tokens: int) -> int:
    """The tokens a window leaves unused (a short file, a cursor near the top), which cross-file
    context may take: on a small context the prefix budget would otherwise leave it nothing.

    Rounded down to SPARE_STEP so that the context budget, and with it the prompt's start, stays
    put while the user types.
    """
    used = int((len(prefix) + len(suffix)) / CHARS_PER_TOKEN) + 1
    spare = max(0, prefix_tokens + suffix_tokens - used)
    return spare - spare % SPARE_STEP
