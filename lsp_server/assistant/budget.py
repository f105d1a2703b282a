"""The latency budget of automatic completions (issue 16 §2): how many prompt tokens this machine
can evaluate before an as-you-type completion's first line is due, and how they are shared.

Only the tokens a backend must evaluate cost time: llama.cpp keeps the KV cache of the longest
common prefix with the previous prompt of the same document, so a prompt that starts like the
last one is cheap however long it is.
"""

from __future__ import annotations

import threading

from codeflow.context.pack import CHARS_PER_TOKEN

# The budget when the setting is 0 (auto), by where the model runs.
AUTO_BUDGET_MS = {"gpu": 300, "cpu": 1500}
# Prompt tokens per second assumed before the first measurement: low on purpose, so that the first
# automatic request is short rather than late. The default model (Gemma 3 270M) measured 600-1500
# tokens/s on 2 loaded cores.
DEFAULT_PREFILL_TPS = {"gpu": 2000.0, "cpu": 300.0}
# Decode steps until a first line ends, at the 95th percentile rather than typically (the goal is
# the p95 first line within budget: `codeflow bench latency` saw 24-token lines take 1 s of a
# 1.5 s budget once the cut prompt kept its lines), and the decode cost assumed for them relative
# to prefill (a decode step costs about what 10 prompt tokens cost in a batch on a CPU).
FIRST_LINE_TOKENS = 24
DECODE_COST_TOKENS = 10
# Allowances are rounded down to this step, so a drifting speed estimate does not change the
# prompt's budgets (and with them its start) from one keystroke to the next.
ALLOWANCE_STEP = 64
# The FIM markers, the file header and the rounding of estimates.
OVERHEAD_TOKENS = 32
# New measurements weigh this much in the moving estimate.
SMOOTHING = 0.3
# Shorter evaluations are dominated by fixed costs and say little about the speed.
MIN_MEASURED_TOKENS = 32


def budget_ms(setting_ms: int, device: str) -> int:
    """The latency budget in milliseconds: the setting, or the default for the device when 0."""
    if setting_ms > 0:
        return setting_ms
    return AUTO_BUDGET_MS["gpu" if device == "gpu" else "cpu"]


def allowance(budget: int, prefill_tps: float) -> int:
    """Prompt tokens that can be evaluated within `budget` ms, the first line's decoding taken off;
    a multiple of ALLOWANCE_STEP and at least one step."""
    spendable = budget / 1000.0 * prefill_tps - FIRST_LINE_TOKENS * DECODE_COST_TOKENS
    return max(ALLOWANCE_STEP, int(spendable) // ALLOWANCE_STEP * ALLOWANCE_STEP)


def shares(tokens: int, context: int, prefix: int, suffix: int) -> tuple[int, int, int]:
    """(context, prefix, suffix) budgets within `tokens` for a prompt evaluated from scratch.

    The lines nearest the cursor rank first: the suffix gets up to an eighth, the prefix at least
    half of what is left, and context the rest (the packer fills it best-ranked first)."""
    room = max(0, tokens - OVERHEAD_TOKENS)
    suffix = min(suffix, room // 8)
    prefix = min(prefix, max((room - suffix) // 2, room - suffix - context))
    return max(0, min(context, room - suffix - prefix)), prefix, suffix


def new_tokens(prompt: str, previous: str) -> int:
    """Estimated tokens of `prompt` past its common prefix with `previous` (what a backend keeping
    the previous prompt's KV cache must still evaluate)."""
    same = 0
    limit = min(len(prompt), len(previous))
    step = 4096
    while same < limit and prompt[same:same + step] == previous[same:same + step]:
        same += step
    same = min(same, limit)
    while same < limit and prompt[same] == previous[same]:
        same += 1
    return int((len(prompt) - same) / CHARS_PER_TOKEN) + 1


class PrefillMeter:
    """A moving estimate of prompt tokens evaluated per second on this machine and model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tps: float | None = None
        self.samples = 0

    def observe(self, tokens: int, seconds: float) -> None:
        """One evaluation of `tokens` prompt tokens that took `seconds` to the first token."""
        if tokens < MIN_MEASURED_TOKENS or seconds <= 0:
            return
        speed = tokens / seconds
        with self._lock:
            self.tps = speed if self.tps is None else (1 - SMOOTHING) * self.tps + SMOOTHING * speed
            self.samples += 1

    def speed(self, device: str) -> float:
        """The measured speed, or a conservative default before the first measurement."""
        with self._lock:
            return self.tps if self.tps is not None else DEFAULT_PREFILL_TPS["gpu" if device == "gpu" else "cpu"]
