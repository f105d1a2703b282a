"""Typed errors raised by `context/`."""

from __future__ import annotations


class ContextError(Exception):
    """Base class of every error `context/` raises."""


class PositionError(ContextError):
    """A line or column lies outside the document."""


class UnreadableFileError(ContextError):
    """A file is binary, too large or cannot be decoded as text."""


class EditRejectedError(ContextError):
    """A model's answer cannot become a safe edit (no code, breaks the syntax, stale document)."""
