"""The remote backend: an OpenAI-compatible endpoint (vLLM, llama-server, TGI) streamed over SSE.

Raw prompts (FIM or plain prefix) go to `/v1/completions`; instruct work goes to
`/v1/chat/completions`, either through `stream_chat(messages, ...)` or through `stream()` with a
`Prompt(kind="chat")`, whose text is then sent as one user message: the server applies the
model's chat template, so callers must not render it themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import httpx
import msgspec

from .backend import CancelToken, ChatMessage, FimTokens, GenOptions, ModelInfo, Prompt
from .breaker import CircuitBreaker
from .errors import EmptyPromptError, RemoteError, RemoteTimeoutError
from .http_guard import GuardedTransport, RequestGuard, guarding
from .redact import redact, register_secret
from .secrets import SCRUBBER, looks_like_key, scrub_body, warm_up
from . import openai_wire as wire
from .sse import DONE, iter_sse_data

log = logging.getLogger(__name__)

# `ModelInfo.chat_template` for a chat endpoint: the server renders the template itself.
SERVER_CHAT_TEMPLATE = "{# applied by the remote server #}"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# Client-side bounds on one answer (issue 12: a flood read 105,116 chunks in 8 s). Servers send a
# few chunks beyond the tokens (role, finish, usage) and each chunk carries ids and the model
# name, so both bounds are generous multiples of max_tokens.
_CHUNKS_PER_TOKEN = 4
_SPARE_CHUNKS = 64
_BYTES_PER_TOKEN = 2048
_SPARE_BYTES = 64 * 1024


class RemoteConfig(Protocol):
    """The settings RemoteBackend reads; `lsp_server.settings.RemoteSettings` fits."""

    url: str
    model: str
    chat_model: str
    api_key_env: str
    connect_timeout_s: float
    read_timeout_s: float
    completion_deadline_s: float
    action_deadline_s: float
    retries: int
    verify_tls: bool
    fim_prefix: str
    fim_suffix: str
    fim_middle: str


class _Tally:
    """What one request's attempts came to, for the circuit breaker."""

    def __init__(self) -> None:
        self.pieces = 0
        self.failed_attempts = 0
        self.finished = False
        self.failed = False


class _Retryable(Exception):
    """A failure before the first piece, worth another attempt."""

    def __init__(self, error: RemoteError, retry_after: float = 0.0) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def api_root(url: str) -> str:
    """The server root for a configured URL given with or without its `/v1` suffix."""
    root = url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def read_api_key(api_key_env: str, env: Mapping[str, str]) -> str | None:
    """The key from the named environment variable; None when no variable is named."""
    if not api_key_env:
        return None
    if not _ENV_NAME.fullmatch(api_key_env):
        # Never echo the value: a user may have pasted the key itself here.
        raise RemoteError("remote.apiKeyEnv must name an environment variable, not hold a key")
    if looks_like_key(api_key_env):
        # A key is a valid identifier too (sk_live_..., ghp_...): refuse it, still without echoing.
        raise RemoteError("remote.apiKeyEnv holds what looks like an API key itself; put the key in"
                          " an environment variable and set remote.apiKeyEnv to that variable's name")
    key = env.get(api_key_env, "")
    if not key:
        raise RemoteError(f"environment variable {api_key_env} (remote.apiKeyEnv) is not set")
    return key


class RemoteBackend:
    """Streams completions from an OpenAI-compatible server; implements `Backend`."""

    def __init__(
        self,
        settings: RemoteConfig,
        *,
        chat: bool = False,
        env: Mapping[str, str] = os.environ,
        n_ctx: int = 4096,
        breaker: CircuitBreaker | None = None,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not settings.url:
            raise RemoteError("no remote endpoint configured (remote.url is empty)")
        self.root = api_root(settings.url)
        self._settings = settings
        self._chat = chat
        self._backoff_s = backoff_s
        # One overall limit per request, whatever the retries (issue 12).
        self.deadline_s = settings.action_deadline_s if chat else settings.completion_deadline_s
        self.breaker = breaker or CircuitBreaker()
        key = read_api_key(settings.api_key_env, env)
        warm_up()  # the secret scanner loads with the backend, not on the first keystroke
        headers = {}
        if key is not None:
            register_secret(key)
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        self._client = httpx.Client(
            base_url=self.root,
            headers=headers,
            timeout=timeout,
            # Its waits end on a cancel or at the deadline, in every state (quant/http_guard.py).
            transport=transport or GuardedTransport(verify=settings.verify_tls),
        )
        self._tokenize_route: str | None = ""
        try:
            self._info = self._probe(n_ctx)
        except BaseException:
            self._client.close()
            raise

    @property
    def info(self) -> ModelInfo:
        """The served model, as `/v1/models` described it (or the settings, if unreachable)."""
        return self._info

    def _wanted_model(self) -> str:
        s = self._settings
        return (s.chat_model or s.model) if self._chat else s.model

    def _fim(self) -> FimTokens | None:
        s = self._settings
        if s.fim_prefix and s.fim_suffix and s.fim_middle:
            return FimTokens(prefix=s.fim_prefix, suffix=s.fim_suffix, middle=s.fim_middle)
        return None

    def _probe(self, n_ctx: int) -> ModelInfo:
        """Ask `/v1/models` which model is served; a wrong model name is an error."""
        wanted = self._wanted_model()
        url = f"{self.root}/v1/models"
        try:
            with self._guard(CancelToken()):
                response = self._client.get("/v1/models")
        except httpx.TransportError as exc:
            log.warning("cannot reach %s (%s); using the configured model name", url, exc)
            return self._make_info(wanted or "remote", None, n_ctx)
        if response.status_code != 200:
            error = self._status_error("GET", url, response)
            if response.status_code in (401, 403):
                raise error
            log.warning("%s; using the configured model name", error)
            return self._make_info(wanted or "remote", None, n_ctx)
        models = wire.model_entries(response)
        ids = [str(m.get("id", "")) for m in models]
        if wanted and ids and wanted not in ids:
            raise RemoteError(f"model {wanted!r} is not served by {self.root}; it serves {ids}")
        chosen = wanted or (ids[0] if ids else "remote")
        entry = next((m for m in models if m.get("id") == chosen), {})
        return self._make_info(chosen, wire.context_length(entry), n_ctx)

    def _make_info(self, name: str, served_ctx: int | None, n_ctx: int) -> ModelInfo:
        return ModelInfo(
            name=name,
            arch="remote",
            n_ctx=served_ctx or n_ctx,
            n_ctx_train=served_ctx or 0,
            fim=self._fim(),
            chat_template=SERVER_CHAT_TEMPLATE if self._chat else None,
            device=f"remote {self.root}",
            prefill=False,
        )

    def stream(self, prompt: Prompt, opts: GenOptions, cancel: CancelToken) -> Iterator[str]:
        """Stream a raw prompt from `/v1/completions`, or a chat prompt's messages from
        `/v1/chat/completions` (its text alone, as one user message, when it has none)."""
        if prompt.kind == "chat":
            messages = prompt.messages or (ChatMessage(role="user", content=prompt.text),)
            yield from self.stream_chat(messages, opts, cancel)
            return
        if not prompt.text.strip():
            raise EmptyPromptError(f"refusing to send an empty prompt to {self.root}")
        body = {"prompt": prompt.text, **self._sampling(opts)}
        yield from self._stream("/v1/completions", body, wire.completion_piece, cancel, opts.max_tokens)

    def stream_chat(
        self, messages: Sequence[ChatMessage], opts: GenOptions, cancel: CancelToken
    ) -> Iterator[str]:
        """Stream an answer to `messages` from `/v1/chat/completions`."""
        if not any(m.content.strip() for m in messages if m.role == "user"):
            raise EmptyPromptError(f"refusing to send a chat request with no user text to {self.root}")
        body = {"messages": [msgspec.to_builtins(m) for m in messages], **self._sampling(opts)}
        yield from self._stream("/v1/chat/completions", body, wire.chat_piece, cancel, opts.max_tokens)

    def _sampling(self, opts: GenOptions) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": opts.max_tokens,
            "temperature": opts.temperature,
            "top_p": opts.top_p,
            "seed": opts.seed,
            "stream": True,
        }
        if self._info.name != "remote":
            body["model"] = self._info.name
        if opts.stop:
            body["stop"] = list(opts.stop)
        if opts.repeat_penalty > 1.0:
            # The OpenAI API has no multiplicative penalty; its additive one is the portable kin.
            body["frequency_penalty"] = round(opts.repeat_penalty - 1.0, 3)
        return body

    def _guard(self, cancel: CancelToken) -> contextlib.AbstractContextManager[None]:
        """This thread's HTTP waits end on `cancel` or at the request deadline."""
        return guarding(RequestGuard(cancel, time.monotonic() + self.deadline_s))

    def _stream(
        self,
        path: str,
        body: dict[str, Any],
        piece_of: Callable[[dict[str, Any]], str],
        cancel: CancelToken,
        max_tokens: int,
    ) -> Iterator[str]:
        """Guard one streamed request with the circuit breaker and the request deadline."""
        if not self.breaker.allow():
            raise RemoteError(
                # No countdown in the text: an unchanged message is reported to the editor once.
                f"{self.root} is failing ({self.breaker.consecutive_failures} failures in a row);"
                f" calls paused for {self.breaker.cooldown_s:.0f}s"
            )
        guard = RequestGuard(cancel, time.monotonic() + self.deadline_s)
        tally = _Tally()
        try:
            # A placeholder the model echoes becomes the user's value again, here on their machine.
            yield from SCRUBBER.restore_stream(self._attempts(path, body, piece_of, guard, tally, max_tokens))
        except Exception:
            tally.failed = True
            raise
        finally:
            self._settle(tally)

    def _settle(self, tally: _Tally) -> None:
        """Tell the breaker how the request went. A cancel or a caller that stopped reading says
        nothing about the endpoint, unless a try had already failed (issue 12: cancels during
        back-off reset the breaker, and 8 cancelled requests sent 16 failing POSTs)."""
        if tally.failed:
            self.breaker.failure()
        elif tally.finished or tally.pieces:
            self.breaker.success()
        elif tally.failed_attempts:
            self.breaker.failure()
        else:
            self.breaker.release()

    def _attempts(
        self,
        path: str,
        body: dict[str, Any],
        piece_of: Callable[[dict[str, Any]], str],
        guard: RequestGuard,
        tally: _Tally,
        max_tokens: int,
    ) -> Iterator[str]:
        """Retry with backoff while nothing has reached the caller yet, within the deadline."""
        retries = max(0, self._settings.retries)
        for attempt in range(retries + 1):
            if guard.cancel.cancelled:
                return
            if guard.expired:
                raise self._deadline_error(path)
            try:
                yield from self._once(path, body, piece_of, guard, tally, max_tokens)
                return
            except _Retryable as exc:
                tally.failed_attempts += 1
                if tally.pieces or attempt == retries or guard.cancel.cancelled:
                    raise exc.error from exc
                delay = max(self._backoff_s * 2**attempt, exc.retry_after)
                log.info("%s; retry %d/%d in %.2fs", exc.error, attempt + 1, retries, delay)
                _sleep(min(delay, guard.left()), guard.cancel)

    def _deadline_error(self, path: str) -> RemoteTimeoutError:
        which = "actionDeadlineS" if self._chat else "completionDeadlineS"
        return RemoteTimeoutError(f"no complete answer from {self.root}{path} within {self.deadline_s}s"
                                  f" (remote.{which})")

    def _once(
        self,
        path: str,
        body: dict[str, Any],
        piece_of: Callable[[dict[str, Any]], str],
        guard: RequestGuard,
        tally: _Tally,
        max_tokens: int,
    ) -> Iterator[str]:
        """One request; leaving this generator (done, cancelled, closed) closes the response."""
        url = f"{self.root}{path}"
        try:
            with contextlib.ExitStack() as stack:
                with guarding(guard):
                    # The one place streamed bodies leave the machine: no secret goes with them (issue 11).
                    response = stack.enter_context(self._client.stream("POST", path, json=scrub_body(body)))
                    self._check_status("POST", url, response)
                limit = max(1, max_tokens) * _BYTES_PER_TOKEN + _SPARE_BYTES
                lines = _guarded(_capped_lines(response.iter_bytes(), limit, url), guard)
                yield from self._pieces(url, lines, piece_of, guard.cancel, tally, max_tokens)
        except httpx.TransportError as exc:
            if guard.cancel.cancelled:
                return  # the caller went away; the endpoint did nothing wrong
            if guard.expired:
                raise self._deadline_error(path) from exc
            raise _Retryable(self._transport_error(url, exc)) from exc

    def _pieces(
        self,
        url: str,
        lines: Iterable[str],
        piece_of: Callable[[dict[str, Any]], str],
        cancel: CancelToken,
        tally: _Tally,
        max_tokens: int,
    ) -> Iterator[str]:
        """The text pieces of one SSE answer, at most `max_tokens` of them (then it is whole)."""
        chunks = 0
        max_chunks = max(1, max_tokens) * _CHUNKS_PER_TOKEN + _SPARE_CHUNKS
        for data in iter_sse_data(lines):
            if cancel.cancelled:
                return
            if data.strip() == DONE:
                tally.finished = True
                return
            chunks += 1
            if chunks > max_chunks:
                raise RemoteError(f"stream from {url} sent over {max_chunks} chunks for max_tokens="
                                  f"{max_tokens} (closed it)")
            chunk = wire.decode_chunk(url, data)
            tally.finished = tally.finished or wire.finish_reason(chunk) is not None
            piece = piece_of(chunk)
            if piece:
                tally.pieces += 1
                yield piece
                if tally.pieces >= max_tokens:
                    # Enforced here too: a server that ignores max_tokens is cut, not followed.
                    tally.finished = True
                    return
        if not tally.finished and not cancel.cancelled:
            raise _Retryable(RemoteError(
                f"stream from {url} ended without [DONE] after {tally.pieces} pieces (truncated)"
            ))

    def _check_status(self, method: str, url: str, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        response.read()
        error = self._status_error(method, url, response)
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(error, wire.retry_after(response))
        raise error

    def _status_error(self, method: str, url: str, response: httpx.Response) -> RemoteError:
        reason = response.reason_phrase or "error"
        detail = wire.error_detail(response)
        hint = ""
        if response.status_code in (401, 403):
            env = self._settings.api_key_env
            hint = f" (check the key in ${env})" if env else " (set remote.apiKeyEnv)"
        text = f"{method} {url}: HTTP {response.status_code} {reason}{hint}"
        return RemoteError(redact(f"{text}: {detail}" if detail else text))

    def _transport_error(self, url: str, exc: httpx.TransportError) -> RemoteError:
        s = self._settings
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"connecting to {url} timed out after {s.connect_timeout_s}s")
        if isinstance(exc, httpx.ReadTimeout):
            return RemoteTimeoutError(f"no data from {url} within {s.read_timeout_s}s")
        if isinstance(exc, httpx.ConnectError):
            return RemoteError(f"cannot connect to {url}: {exc}")
        name = type(exc).__name__
        return RemoteError(redact(f"connection to {url} failed ({name}): {exc}"))

    def count_tokens(self, text: str) -> int:
        """Count with the server's tokenizer; an estimate when it offers no tokenize route."""
        if self._tokenize_route == "":
            routes = ["/tokenize", "/extras/tokenize/count"]
        else:
            routes = [self._tokenize_route] if self._tokenize_route else []
        try:
            with self._guard(CancelToken()):
                for route in routes:
                    count = self._count_at(route, text)
                    if count is not None:
                        self._tokenize_route = route
                        return count
        except httpx.TimeoutException as exc:
            # A tokenize route that hangs would hold every completion's prompt: stop asking it.
            log.warning("tokenize at %s timed out (%s); estimating token counts from now on", self.root, exc)
            self._tokenize_route = None
            return _estimate_tokens(text)
        except httpx.TransportError as exc:
            log.debug("tokenize at %s failed (%s); estimating", self.root, exc)
            return _estimate_tokens(text)
        if self._tokenize_route == "":
            log.info("%s offers no tokenize route; estimating token counts", self.root)
            self._tokenize_route = None
        return _estimate_tokens(text)

    def _count_at(self, route: str, text: str) -> int | None:
        """The count from one tokenize route; None when the server does not offer it."""
        body = {"content": text, "prompt": text, "input": text, "add_special": False}
        if self._info.name != "remote":
            body["model"] = self._info.name
        response = self._client.post(route, json=scrub_body(body))
        try:
            payload = response.json() if response.status_code == 200 else None
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        if isinstance(payload.get("count"), int):
            return int(payload["count"])
        tokens = payload.get("tokens")
        return len(tokens) if isinstance(tokens, list) else None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


def _estimate_tokens(text: str) -> int:
    # Over-estimate (3 characters a token) so that a prompt budget is never exceeded.
    return len(text) // 3 + 1


def _capped_lines(chunks: Iterable[bytes], limit: int, url: str) -> Iterator[str]:
    """The lines of a response body; more than `limit` bytes is an error (a line that never ends
    would otherwise grow in memory without bound)."""
    total, pending = 0, b""
    for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise RemoteError(f"stream from {url} sent over {limit} bytes (closed it)")
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


def _guarded(items: Iterator[str], guard: RequestGuard) -> Iterator[str]:
    """`items`, each fetched under `guard`; between items the thread is free of it."""
    while True:
        with guarding(guard):
            item = next(items, None)
        if item is None:
            return
        yield item


def _sleep(seconds: float, cancel: CancelToken) -> None:
    deadline = time.monotonic() + seconds
    while not cancel.cancelled and time.monotonic() < deadline:
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
