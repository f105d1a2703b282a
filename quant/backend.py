"""The one backend protocol every model runner implements, and the data it exchanges."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Literal, Protocol

import msgspec

PromptKind = Literal["fim", "chat", "prefix"]


class FimTokens(msgspec.Struct, kw_only=True, frozen=True):
    """The model's own fill-in-the-middle markers, as text, read from its vocabulary."""

    prefix: str
    suffix: str
    middle: str
    file_sep: str | None = None
    repo_name: str | None = None
    eot: tuple[str, ...] = ()


class ChatMessage(msgspec.Struct, kw_only=True, frozen=True):
    """One message of a chat request."""

    role: str
    content: str


class ModelInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What callers may know about the model behind a backend."""

    name: str
    path: str | None = None
    arch: str = "unknown"
    n_ctx: int = 2048
    n_ctx_train: int = 0
    fim: FimTokens | None = None
    chat_template: str | None = None
    bos: str | None = None
    eos: str | None = None
    device: str = "cpu"
    # Whether a chat answer can be prefilled (the prompt ends inside the assistant's turn). A
    # chat endpoint applies its own template and starts the turn itself, so it cannot.
    prefill: bool = True

    @property
    def prompt_kind(self) -> PromptKind:
        """FIM when the vocabulary has the markers, chat with a template, else plain prefix."""
        if self.fim is not None:
            return "fim"
        if self.chat_template:
            return "chat"
        return "prefix"


class Prompt(msgspec.Struct, kw_only=True, frozen=True):
    """A fully rendered prompt. `key` names the sequence it belongs to (a document URI).

    A chat prompt also carries its `messages`: a backend that runs the model itself feeds `text`
    (the messages rendered with the model's template), a chat endpoint sends the messages.
    """

    text: str
    kind: PromptKind = "prefix"
    key: str = ""
    add_bos: bool = True
    messages: tuple[ChatMessage, ...] = ()
    # The answer must begin with this text: the half-typed word the prompt stopped before (token
    # healing). A backend that can constrain sampling does; the caller checks the answer anyway.
    lead: str = ""
    # From a private document (secret or ignored file, or outside every root): never sent to a
    # remote endpoint, whatever the fallback policy says (issue 11, section 3).
    local_only: bool = False


class GenOptions(msgspec.Struct, kw_only=True, frozen=True):
    """Sampling and stopping options for one generation."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    seed: int = 0
    # llama.cpp's multiplicative penalty on recent tokens; 1.0 is off.
    repeat_penalty: float = 1.0
    # Prompt-lookup speculative decoding: at most this many tokens guessed from the context per
    # step, verified in one batch; 0 is off. Faster when the answer quotes the prompt (rewrites,
    # explanations), never a different answer: a backend that cannot guarantee the same output
    # as plain decoding (quant/lookup.py) decodes plainly instead.
    lookup: int = 0


class GenStats(msgspec.Struct, kw_only=True):
    """Timings and counts of one generation, for logs, tests and benchmarks."""

    prompt_chars: int = 0
    tokens: int = 0
    first_token_s: float = -1.0
    total_s: float = -1.0
    cancelled: bool = False
    tokens_after_cancel: int = 0
    # Prompt-lookup draft tokens the model accepted (GenOptions.lookup); each saved a decode step.
    accepted_drafts: int = 0
    error: str = ""


class CancelToken:
    """A flag checked between tokens; set it and generation stops within one token step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.tokens_after_cancel = 0

    def cancel(self) -> None:
        """Ask the generation to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called."""
        return self._event.is_set()


def close_stream(pieces: Iterator[str]) -> None:
    """Close a backend's stream at once (a generator: ends the HTTP stream, tells the worker to
    stop, or stops llama.cpp) when its reader is done early; other iterators need nothing."""
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


class Backend(Protocol):
    """A model runner. Callers never ask which implementation they hold."""

    @property
    def info(self) -> ModelInfo:
        """The loaded model's description."""
        ...

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Yield text pieces as they are generated; stop as soon as `cancel` is set."""
        ...

    def count_tokens(self, text: str) -> int:
        """Exact token count of `text` with the model's tokenizer."""
        ...

    def close(self) -> None:
        """Release the model."""
        ...
