"""A test and demo backend that replays recorded answers instead of running a model.

Selected with `model.chatPath = "recorded:/path/answers.json"`. The file holds:

    {"name": "recorded", "delay_ms": 20, "log": "/tmp/prompts.jsonl",
     "answers": [{"match": "Add a docstring", "text": "def f() -> None: ...\\n```", "delay_ms": 5}],
     "default": "..."}

The first answer whose `match` occurs in the prompt is streamed in small pieces, `delay_ms` apart,
honouring stop strings, `max_tokens` (one piece counts as one token) and the CancelToken; every
prompt is appended to `log` as a JSON line. It is never a default: it exists so that tests can
assert on specific model text, and so that demos run without a model file.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from codeflow.quant.backend import CancelToken, GenOptions, ModelInfo, Prompt
from codeflow.quant.errors import ModelNotFoundError

PREFIX = "recorded:"
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Answer(msgspec.Struct, kw_only=True, frozen=True):
    """One recorded answer and the prompt text that selects it."""

    match: str = ""
    text: str
    # Overrides the recording's delay for this answer.
    delay_ms: float | None = None


class Recording(msgspec.Struct, kw_only=True, frozen=True):
    """The answers file."""

    name: str = "recorded"
    delay_ms: float = 0.0
    log: str = ""
    chat_template: str = CHATML
    answers: tuple[Answer, ...] = ()
    default: str = ""


class RecordedBackend:
    """Replays answers from a JSON file; implements the Backend protocol."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        try:
            self._rec = msgspec.json.decode(self._path.read_bytes(), type=Recording)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ModelNotFoundError(f"cannot read recorded answers {self._path}: {exc}") from exc
        self._info = ModelInfo(name=self._rec.name, path=str(self._path), arch="recorded",
                               n_ctx=1 << 20, chat_template=self._rec.chat_template, eos="<|im_end|>")
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        """A chat model with the recording's template."""
        return self._info

    def _answer(self, prompt: str) -> tuple[str, float]:
        for answer in self._rec.answers:
            if answer.match in prompt:
                return answer.text, self._rec.delay_ms if answer.delay_ms is None else answer.delay_ms
        return self._rec.default, self._rec.delay_ms

    def _log(self, prompt: Prompt) -> None:
        if self._rec.log:
            with self._lock, open(self._rec.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"text": prompt.text, "key": prompt.key}) + "\n")

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Yield the selected answer piece by piece, stopping on cancel, stop strings or max_tokens."""
        self.calls += 1
        self._log(prompt)
        text, delay_ms = self._answer(prompt.text)
        cuts = [text.find(s) for s in opts.stop if s and s in text]
        if cuts:
            text = text[: min(cuts)]
        pieces = re.findall(r"\s*\S{1,4}|\s+", text)[: opts.max_tokens]
        for piece in pieces:
            if cancel.cancelled:
                cancel.tokens_after_cancel += 1
                return
            if delay_ms:
                time.sleep(delay_ms / 1000)
            yield piece

    def count_tokens(self, text: str) -> int:
        """Pieces as `stream` would cut them."""
        return len(re.findall(r"\s*\S{1,4}|\s+", text))

    def close(self) -> None:
        """Nothing to release."""
