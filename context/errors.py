"""Typed errors raised by `context/`."""

from __future__ import annotations


class ContextError(Exception):
    """Base class of every error `context/` raises."""


class PositionError(ContextError):
    """A line or column lies outside the document."""


class UnreadableFileError(ContextError):
    """A file is binary, too large or cannot be decoded as text."""
