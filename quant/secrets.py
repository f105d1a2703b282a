"""Find secrets in text bound for a remote endpoint and swap them for stable placeholders.

detect-secrets' plugins (AWS, GitHub, Slack, Stripe, Twilio, SendGrid, JWT, private keys, basic-auth
URLs, keyword assignments, high-entropy strings...) find the values; each distinct value becomes
`<secret:N>`, the same N for the same value for the life of the process, so the model still sees
the code's shape and a prompt stays byte-stable between keystrokes. Results are cached per line:
a prompt where one line changed costs one line's scan (bench/redaction.py measures it).
Answers are mapped back (`restore`), so a placeholder the model echoes becomes the user's own value
again on the user's machine. Issue 11, section 3.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from .backend import close_stream
from .redact import register_secret

PLACEHOLDER = re.compile(r"<secret:(\d+)>")
_PLACEHOLDER_HEAD = "<secret:"
# Findings shorter than this are noise (a keyword detector hit on `password = "x"` still counts:
# see MIN_KEYWORD_LEN); real tokens are far longer.
MIN_SECRET_LEN = 6
MIN_KEYWORD_LEN = 4
# Detectors report only part of some tokens (GitHub's reports "ghp", a JWT loses its signature):
# a finding grows over the token characters around it.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-./+=~]*")
# A line that is one long unquoted token (a PEM body line, a bare key in a .env or YAML file).
_BARE_TOKEN = re.compile(r"^\s*(?:[\w.\-]+\s*[:=]\s*)?([A-Za-z0-9+/=_\-.]{32,})\s*$")
_PEM_END = "-----END"
MAX_PEM_LINES = 200
LINE_CACHE = 100_000
# Shorter findings are not masked in logs: `password = "test"` must not mangle every "test".
LOG_MASK_LEN = 8
# Vendors' documented key prefixes (OpenAI/Stripe, GitHub, Slack, AWS, Google, GitLab, Hugging
# Face): for a short pasted key that no detector's length rule accepts.
KEY_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "xox",
                "AKIA", "ASIA", "AIza", "glpat-", "hf_")
# Generic detectors produce guesses; detect-secrets' own heuristics drop the usual false hits.
_GENERIC = frozenset({"KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString"})
# Public IPs are not credentials, and masking them would only confuse the model.
_SKIPPED = frozenset({"IPPublicDetector"})


@lru_cache(maxsize=1)
def _plugins() -> tuple[Any, ...]:
    """Every detect-secrets plugin, built once (importing them costs ~100 ms)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    classes = get_mapping_from_secret_type_to_class().values()
    return tuple(cls() for cls in classes if cls.__name__ not in _SKIPPED)


def warm_up() -> None:
    """Load the plugins now (about 100 ms, measured in bench/redaction.py), not on a keystroke."""
    _plugins()


@lru_cache(maxsize=1)
def _filters() -> tuple[Any, ...]:
    from detect_secrets.filters import heuristic as h

    return (h.is_sequential_string, h.is_potential_uuid, h.is_templated_secret,
            h.is_prefixed_with_dollar_sign, h.is_not_alphanumeric_string)


def _false_positive(name: str, value: str, line: str) -> bool:
    from detect_secrets.filters import heuristic as h

    if name not in _GENERIC:
        return False
    if len(value) < (MIN_KEYWORD_LEN if name == "KeywordDetector" else MIN_SECRET_LEN):
        return True
    return any(f(value) for f in _filters()) or h.is_indirect_reference(line)


def _grow(line: str, value: str) -> list[str]:
    """The whole token around each place `value` occurs in `line`."""
    out = []
    start = line.find(value)
    while start >= 0:
        end = start + len(value)
        # Only short or cut values grow; quotes, spaces and '@' end a token (a basic-auth password).
        cut_short = len(value) < 40 or value.endswith(".")
        grown = line[start:_TOKEN_CHARS.match(line, end).end()] if cut_short else value
        out.append(grown.rstrip(".") if grown != value else value)
        start = line.find(value, end)
    return out or [value]


def scan_line(line: str, filename: str = "prompt.py") -> tuple[str, ...]:
    """The secret values in one line, longest first (so that replacing never splits one)."""
    found: set[str] = set()
    for plugin in _plugins():
        name = type(plugin).__name__
        try:
            hits = plugin.analyze_line(filename=filename, line=line, line_number=0, context=None)
        except Exception:  # a plugin bug must not stop the scan; the other plugins still run
            continue
        for hit in hits:
            value = hit.secret_value
            if not value or _false_positive(name, value, line):
                continue
            found.update(v for v in _grow(line, value) if len(v) >= MIN_KEYWORD_LEN)
    bare = _BARE_TOKEN.match(line)
    if bare and _random_token(bare.group(1)):
        found.add(bare.group(1))
    return tuple(sorted(found, key=len, reverse=True))


def _random_token(token: str) -> bool:
    """detect-secrets' entropy limits (hex 3.0, base64 4.5, here 4.2 for shorter lines) on an
    unquoted token; a digit is required so that long identifiers made of words never match."""
    if not any(c.isdigit() for c in token):
        return False
    if all(c in "0123456789abcdefABCDEF" for c in token):
        return _entropy(token) > 3.0
    return _entropy(token) > 4.2


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def looks_like_key(value: str) -> bool:
    """Whether a setting's value is itself a credential (not, say, an environment variable name)."""
    value = value.strip()
    if not value:
        return False
    for line in (value, f'"{value}"'):
        for plugin in _plugins():
            if type(plugin).__name__ == "KeywordDetector":
                continue  # it flags any quoted value: "OPENAI_API_KEY" is a fine variable name
            try:
                if plugin.analyze_line(filename="setting", line=line, line_number=0, context=None):
                    return True
            except Exception:
                continue
    if value.startswith(KEY_PREFIXES) and len(value) >= 16 and any(c.isdigit() for c in value):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    # Variable names are words; keys are long runs of random letters and digits.
    return len(value) >= 20 and mixed and any(c.isdigit() for c in value) and _entropy(value) > 3.5


class Scrubber:
    """Replaces secrets with `<secret:N>` and maps placeholders back; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._values: list[str] = []
        self._lines: dict[str, tuple[str, ...]] = {}

    def placeholder(self, value: str) -> str:
        """The stable placeholder of one value (registered for log masking on first sight)."""
        with self._lock:
            n = self._ids.get(value)
            if n is None:
                self._values.append(value)
                n = self._ids[value] = len(self._values)
                new = True
            else:
                new = False
        if new and len(value) >= LOG_MASK_LEN:
            register_secret(value)  # the value is now known: mask it in every log record too
        return f"<secret:{n}>"

    def _findings(self, line: str) -> tuple[str, ...]:
        hit = self._lines.get(line)
        if hit is None:
            hit = scan_line(line)
            if len(self._lines) >= LINE_CACHE:
                self._lines.clear()  # cheaper than an LRU on every lookup; rescans are rare
            self._lines[line] = hit
        return hit

    def scrub(self, text: str) -> str:
        """`text` with every secret found replaced by its placeholder."""
        lines = text.split("\n")
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            values = self._findings(line) if line.strip() else ()
            if values and any("PRIVATE KEY" in v or "PuTTY" in v for v in values):
                end = _pem_end(lines, i)
                out.append(self.placeholder("\n".join(lines[i:end + 1])))
                i = end + 1
                continue
            for value in values:
                line = line.replace(value, self.placeholder(value))
            out.append(line)
            i += 1
        return "\n".join(out)

    def restore(self, text: str) -> str:
        """`text` with each known placeholder replaced by its original value."""
        if _PLACEHOLDER_HEAD not in text:
            return text
        return PLACEHOLDER.sub(self._original, text)

    def _original(self, match: re.Match[str]) -> str:
        n = int(match.group(1))
        with self._lock:
            return self._values[n - 1] if 0 < n <= len(self._values) else match.group(0)

    def restore_stream(self, pieces: Iterator[str]) -> Iterator[str]:
        """Restore placeholders in streamed text, holding back a piece that may end inside one."""
        held = ""
        try:
            for piece in pieces:
                held += piece
                cut = _safe_cut(held)
                if cut:
                    yield self.restore(held[:cut])
                    held = held[cut:]
            if held:
                yield self.restore(held)
        finally:
            close_stream(pieces)  # ends the HTTP stream at once when the caller stops reading


def _safe_cut(text: str) -> int:
    """How much of `text` can be released: all but a tail that may start a placeholder."""
    start = text.rfind("<")
    if start < 0:
        return len(text)
    tail = text[start:]
    if PLACEHOLDER.fullmatch(tail):
        return len(text)
    head, rest = tail[: len(_PLACEHOLDER_HEAD)], tail[len(_PLACEHOLDER_HEAD):]
    if _PLACEHOLDER_HEAD.startswith(head) and (not rest or rest.isdigit()):
        return start
    return len(text)


def _pem_end(lines: list[str], start: int) -> int:
    """The index of a private key block's END line (or the last line scanned for it)."""
    for j in range(start, min(len(lines), start + MAX_PEM_LINES)):
        if _PEM_END in lines[j]:
            return j
    return start


SCRUBBER = Scrubber()
# Keys of a request body whose strings are not user text: left as they are.
_NOT_TEXT = frozenset({"model", "role", "stop", "stream", "name"})


def scrub_body(body: Any, scrubber: Scrubber = SCRUBBER) -> Any:
    """A JSON request body with secrets scrubbed from every string that carries user text."""
    if isinstance(body, str):
        return scrubber.scrub(body)
    if isinstance(body, dict):
        return {k: v if k in _NOT_TEXT else scrub_body(v, scrubber) for k, v in body.items()}
    if isinstance(body, (list, tuple)):
        return [scrub_body(v, scrubber) for v in body]
    return body
