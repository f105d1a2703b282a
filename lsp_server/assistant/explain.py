""""Explain this function" hovers: the fast facts without the model, and cached explanations.

A hover answers at once with what the index knows (signature, docstring, where it is defined, how
many places use it). The model's explanation runs in a background thread, one at a time, and is
cached under a hash of the function's text and the chat model, so a later hover shows it at once
(issue 6). No pygls here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec

from codeflow.context import edits
from codeflow.context.describe import enrich
from codeflow.context.postprocess import to_sentence_end
from codeflow.context.api import ContextEngineAPI
from codeflow.context.symbols import Definition, Usage
from codeflow.lsp_server.assistant import instruct
from codeflow.lsp_server.assistant.jobs import Cancelled, Job
from codeflow.lsp_server.settings import Settings
from codeflow.quant.backend import Backend, GenOptions
from codeflow.quant.errors import ModelNotFoundError
from codeflow.quant.models import resolve_chat_model

log = logging.getLogger(__name__)
CACHE_ENTRIES = 512
MAX_CALLERS_IN_PROMPT = 8
MAX_FUNCTION_CHARS = 6000
EXPLAINED_KINDS = ("function", "method", "class", "property")
_WORD = re.compile(r"[A-Za-z_$][\w$]*")
# A sentence ends at . ! or ? before white space: "e.g." or "x.y" inside one do not end it.
_SENTENCE_END = re.compile(r"\S[.!?](?=\s)")
# Explanations are prose: a mild repetition penalty keeps small models from looping (code
# rewrites repeat tokens legitimately and keep 1.0).
PROSE_REPEAT_PENALTY = 1.15
SYSTEM = "You are an expert programmer who explains code to a colleague, briefly and precisely."
ASK = ("Explain `{name}` in a few sentences: what it does, its inputs and outputs, and its side "
       "effects.{callers}\n\nFile: {path}\n```{language}\n{code}\n```")


class Facts(msgspec.Struct, kw_only=True, frozen=True):
    """What is known about a function without the model; lines 0-based."""

    name: str
    kind: str
    signature: str
    docstring: str
    language: str
    path: str
    line: int
    text: str
    callers: tuple[Usage, ...] = ()


CHAT_OFF = "explanations, hovers and code actions are off"


def chat_model_problem(settings: Settings) -> str | None:
    """Why explanations, hovers and code actions cannot run, when the chat model they need is
    missing (a plain `pip install -e .` has no SmolLM2), else None; nothing is loaded here."""
    m = settings.model
    if m.chat_path.startswith("recorded:") or (settings.remote.url and settings.backend != "local"):
        return None
    try:
        resolve_chat_model(m.chat_path)
    except ModelNotFoundError as exc:
        return f"{CHAT_OFF}: {exc}"
    return None


def word_at(line_text: str, col: int) -> tuple[str, int, int] | None:
    """The identifier under a column (code points) and its start and end columns."""
    for match in _WORD.finditer(line_text):
        if match.start() <= col <= match.end():
            return match.group(0), match.start(), match.end()
    return None


def describe(engine: ContextEngineAPI | None, path: Path, display: str, text: str, language: str, line: int,
             word: str) -> Facts | None:
    """Facts about what the cursor is on: the function, method or class called `word` (its
    header, or a use the workspace defines), else the function around `line` (issue 13: inside a
    body the user means the function they are in). None outside any function."""
    # The engine keeps each open buffer's tree: no second parse of the document here.
    target = engine.function_at(path, text, line) if engine is not None else \
        edits.enclosing_definition(language, text, line)
    current = str(path.resolve())
    if target is not None and target.name == word and target.start_line <= line <= max(target.body_line,
                                                                                       target.start_line):
        return _here(engine, current, text, language, display, target)
    found = _indexed(engine, current, word) if engine is not None and word else None
    source = engine.source_of(found[0]) if found is not None and found[0] != current else None
    if found is not None and (found[0] == current or source is not None):
        file, definition = found
        lines = source.lines if source is not None else text.split("\n")
        body = "\n".join(lines[definition.start_line:definition.end_line + 1])
        grammar = source.language if source is not None else (edits.grammar_name(language) or "")
        return _facts(engine, enrich(grammar, lines, definition), language if source is None else source.language,
                      source.display if source is not None else display, body, file)
    return _here(engine, current, text, language, display, target) if target is not None else None


def _here(engine: ContextEngineAPI | None, current: str, text: str, language: str, display: str,
          target: Definition) -> Facts:
    """Facts about a definition of the document itself."""
    body = edits.line_span(text, target.start_line, target.end_line)
    return _facts(engine, enrich(edits.grammar_name(language) or "", text.split("\n"), target),
                  language, display, body, current)


def _indexed(engine: ContextEngineAPI, current: str, word: str) -> tuple[str, Definition] | None:
    """The workspace definition `word` refers to from the current file, through its imports."""
    found = [(p, d) for p, d in engine.lookup(current, word) or () if d.kind in EXPLAINED_KINDS]
    return found[0] if found else None


def _facts(engine: ContextEngineAPI | None, definition: Definition, language: str, display: str, body: str,
           home: str | None = None) -> Facts:
    callers = tuple(engine.callers_of(definition.name, home)) if engine is not None else ()
    return Facts(name=definition.name, kind=definition.kind, signature=definition.signature,
                 docstring=definition.docstring, language=language, path=display,
                 line=definition.start_line, text=body[:MAX_FUNCTION_CHARS], callers=callers)


def first_sentence(text: str) -> str | None:
    """The explanation's first whole sentence, once the model has written it, else None."""
    match = _SENTENCE_END.search(text)
    return text[:match.end()].strip() if match else None


def markdown(facts: Facts, explanation: str | None, note: str = "") -> str:
    """The hover text: signature, docstring, place and callers, then the explanation or a note."""
    uses = len(facts.callers)
    more = "+" if uses >= 50 else ""
    parts = [f"```{facts.language}\n{facts.signature or facts.name}\n```"]
    if facts.docstring:
        parts.append(facts.docstring)
    parts.append(f"*{facts.kind}* defined in `{facts.path}:{facts.line + 1}` · "
                 f"used in {uses}{more} place{'s' if uses != 1 else ''}")
    if explanation:
        parts.append(f"---\n**Explanation**\n\n{explanation.strip()}")
    if note:
        parts.append(f"_{note}_" if explanation else f"---\n_{note}_")
    return "\n\n".join(parts)


def explain_prompt(backend: Backend, facts: Facts):  # noqa: ANN201 - BuiltPrompt
    """The explanation prompt: the function and where the workspace uses it."""
    callers = "".join(f"\n- {u.path}:{u.line + 1}: {u.text}" for u in facts.callers[:MAX_CALLERS_IN_PROMPT])
    where = f"\nIt is used here:{callers}" if callers else ""
    user = ASK.format(name=facts.name, callers=where, path=facts.path, language=facts.language, code=facts.text)
    return instruct.chat_prompt(backend, SYSTEM, user)


class Explainer:
    """Background explanations, one running at a time, cached by function text and model."""

    def __init__(self, backend: Callable[[], Backend], model_key: Callable[[], str],
                 on_error: Callable[[Exception], None]) -> None:
        self._backend = backend
        self._model_key = model_key
        self._on_error = on_error
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.last = instruct.Stats()

    def key(self, facts: Facts) -> str:
        """The cache key: a hash of the function's text and the chat model's identity."""
        raw = f"{self._model_key()}\0{facts.language}\0{facts.text}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(raw).hexdigest()

    def cached(self, facts: Facts) -> str | None:
        """The cached explanation, if any."""
        with self._lock:
            key = self.key(facts)
            if key in self._cache:
                self._cache.move_to_end(key)
            return self._cache.get(key)

    def start(self, facts: Facts, max_tokens: int, pinned: bool = False) -> Job:
        """The running job for this function, or a new one; unpinned jobs for others stop."""
        key = self.key(facts)
        with self._lock:
            job = self._jobs.get(key)
            if job is None or (job.done and job.error is not None):
                self._stop_others(key)
                job = Job(instruct.Stats(task="explain"), key=key)
                self._jobs[key] = job
                threading.Thread(target=self._run, args=(job, facts, max_tokens), daemon=True,
                                 name="codeflow-explain").start()
            if pinned:
                job.waiters += 1
            return job

    def release(self, job: Job, cancel: bool) -> None:
        """A command stops waiting; with `cancel`, the job stops too when nobody else waits."""
        with self._lock:
            job.waiters -= 1
            if cancel and job.waiters <= 0:
                job.cancel.cancel()

    def _stop_others(self, key: str) -> None:
        for other in self._jobs.values():
            if other.key != key and not other.done and other.waiters <= 0:
                other.cancel.cancel()
        self._jobs = {k: j for k, j in self._jobs.items() if not j.done}

    def stop_all(self) -> None:
        """Cancel every running explanation (an action needs the model)."""
        with self._lock:
            for job in self._jobs.values():
                if not job.done and job.waiters <= 0:
                    job.cancel.cancel()

    def _run(self, job: Job, facts: Facts, max_tokens: int) -> None:
        error: Exception | None = None
        try:
            backend = self._backend()
            built = explain_prompt(backend, facts)
            instruct.room_left(backend, built, max_tokens, f"explaining `{facts.name}`")
            opts = GenOptions(max_tokens=max_tokens, temperature=0.0, stop=built.stop,
                              repeat_penalty=PROSE_REPEAT_PENALTY, lookup=instruct.LOOKUP_TOKENS)
            job.stats.model = backend.info.name
            text = instruct.generate(backend, built, opts, job, key="explain", prose=True)
            if job.stats.tokens >= max_tokens:  # ran out mid-sentence: end at the last full one
                text = to_sentence_end(text)
            self._store(job.key, text.strip())
            job.replace(text.strip())
        except Cancelled as exc:
            error = exc
        except Exception as exc:  # reported once through on_error; the hover keeps its fast part
            error = exc
            job.stats.error = str(exc)
            self._on_error(exc)
        finally:
            self.last = job.stats
            with self._lock:
                if self._jobs.get(job.key) is job and error is not None:
                    del self._jobs[job.key]
            job.finish(error)

    def _store(self, key: str, text: str) -> None:
        with self._lock:
            self._cache[key] = text
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
