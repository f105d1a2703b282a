"""The OpenAI-compatible wire format: streamed chunks, error bodies and the model list."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from .errors import RemoteError
from .redact import redact

MAX_RETRY_AFTER_S = 10.0


def decode_chunk(url: str, data: str) -> dict[str, Any]:
    """One `data:` payload as a dict; an `error` object in the stream becomes RemoteError."""
    try:
        chunk = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise RemoteError(f"stream from {url} sent invalid JSON: {data[:120]!r}") from exc
    if not isinstance(chunk, dict):
        raise RemoteError(f"stream from {url} sent {type(chunk).__name__}, not an object")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError(redact(f"stream from {url} reported an error: {message}"))
    return chunk


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any]:
    choices = chunk.get("choices") or [{}]
    first = choices[0]
    return first if isinstance(first, dict) else {}


def finish_reason(chunk: dict[str, Any]) -> str | None:
    """The first choice's finish_reason, None while the stream goes on."""
    return _first_choice(chunk).get("finish_reason")


def completion_piece(chunk: dict[str, Any]) -> str:
    """The text of a `/v1/completions` chunk."""
    return _first_choice(chunk).get("text") or ""


def chat_piece(chunk: dict[str, Any]) -> str:
    """The content delta of a `/v1/chat/completions` chunk."""
    delta = _first_choice(chunk).get("delta") or {}
    return (delta.get("content") or "") if isinstance(delta, dict) else ""


def error_detail(response: httpx.Response) -> str:
    """The server's own error message: OpenAI `error.message`, FastAPI `detail`, or raw text."""
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])[:300]
        for key in ("detail", "message", "error"):
            if payload.get(key):
                return str(payload[key])[:300]
    return str(payload)[:300]


def retry_after(response: httpx.Response) -> float:
    """The Retry-After header in seconds, capped; 0 when absent or not a number."""
    try:
        return min(float(response.headers.get("retry-after", 0)), MAX_RETRY_AFTER_S)
    except ValueError:
        return 0.0


def model_entries(response: httpx.Response) -> list[dict[str, Any]]:
    """The `data` list of a `/v1/models` answer."""
    try:
        payload = response.json()
    except ValueError:
        return []
    data = payload.get("data") if isinstance(payload, dict) else None
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def context_length(entry: dict[str, Any]) -> int | None:
    """vLLM says `max_model_len`; llama-server nests `n_ctx_train` under `meta`."""
    meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
    for value in (entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx")):
        if isinstance(value, int) and value > 0:
            return value
    value = meta.get("n_ctx_train")
    return value if isinstance(value, int) and value > 0 else None
