"""Typed errors raised by `quant/`; messages give the cause and the values."""

from __future__ import annotations


class QuantError(Exception):
    """Base class of every error `quant/` raises."""


class ModelNotFoundError(QuantError):
    """A configured model file does not exist or cannot be assembled."""


class ModelLoadError(QuantError):
    """llama.cpp refused to load a model file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load model {path}: {reason}")
        self.path = path
        self.reason = reason


class GGUFError(QuantError):
    """A file is not a readable GGUF model."""


class BackendError(QuantError):
    """A backend failed while generating."""


class RemoteError(BackendError):
    """The remote OpenAI-compatible endpoint failed or answered badly."""


class PlanError(QuantError):
    """The planner was given inputs it cannot reason about."""


class QuantizeError(QuantError):
    """`codeflow quantize` was given bad input or llama.cpp failed to quantize."""


class BackendTimeoutError(BackendError):
    """A backend produced nothing within its time limit."""


class WorkerCrashError(BackendError):
    """The local worker process died; a new one starts on the next request."""


class RemoteTimeoutError(RemoteError, BackendTimeoutError):
    """The remote endpoint sent nothing within the read timeout."""


class LocalOnlyError(BackendError):
    """A private document's prompt may only run locally, and no local backend can run it."""


class EmptyPromptError(QuantError):
    """A prompt with no content: it is never sent, and no answer to it is ever applied."""


class PromptTooLongError(QuantError):
    """A prompt and its answer do not fit the model's context; sending it cut would be worse."""


class PresetError(QuantError):
    """A model preset is unknown, malformed, or has no file for the asked quant."""


class HubError(QuantError):
    """Downloading a model from the hub failed: offline, not found, or a checksum mismatch."""


class DegenerateAnswerError(QuantError):
    """The model's answer turned into a loop; it was stopped and is not shown as an answer."""
