"""Keep API keys out of every log record, whoever logs it and however it is formatted.

A log record factory, not a logger filter: filters on one logger miss records that child loggers
(`httpcore.http11`, ...) propagate, and handlers added later would lack them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "[redacted]"
# Shorter values are not real keys, and masking them would mangle ordinary log text.
MIN_SECRET_LEN = 4

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_previous_factory: Any = None


def redact(text: str) -> str:
    """`text` with every registered secret replaced by a mask."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def register_secret(secret: str) -> None:
    """Mask `secret` in all log records from now on."""
    global _secrets, _previous_factory
    if len(secret) < MIN_SECRET_LEN:
        return
    with _lock:
        _secrets = _secrets | {secret}
        if _previous_factory is None:
            _previous_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_scrubbing_factory)


def _scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record: logging.LogRecord = _previous_factory(*args, **kwargs)
    if _secrets:
        _scrub(record)
    return record


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: logging reports it itself when it formats
        message = str(record.msg)
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            # Formatter prints exc_text when set, so the raw traceback is never rendered.
            record.exc_text = clean
